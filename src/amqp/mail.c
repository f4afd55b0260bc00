/* SPDX-License-Identifier: MIT */
#include "amqp/mail.h"

/* Events, commands and deliveries are made on one side and freed on the other: these touch
 * nothing but the object they are given. */

Event *event_new(AmqpEventType type, uint64_t epoch, bool ok, const char *message) {
        Event *ev;

        ev = calloc(1, sizeof *ev);
        if (!ev)
                return NULL;
        ev->public = (AmqpEvent) { .type = type, .epoch = epoch, .ok = ok };
        if (message)
                ev->public.message = strdup(message); /* NULL when out of memory: the loop logs "" then */
        return ev;
}

void event_free(Event *ev) {
        if (!ev || event_is_delivery(ev))
                return;
        free((char *) ev->public.message);
        free(ev);
}

Command *command_new(CommandType type, uint64_t epoch, size_t n_acks) {
        Command *cmd;

        cmd = calloc(1, sizeof *cmd + n_acks * sizeof cmd->acks[0]);
        if (!cmd)
                return NULL;
        cmd->type = type;
        cmd->epoch = epoch;
        cmd->n_acks = n_acks;
        return cmd;
}

Command *command_free(Command *cmd) {
        if (!cmd)
                return NULL;
        delivery_free(cmd->delivery);
        return mfree(cmd);
}

Delivery *delivery_free(Delivery *d) {
        if (!d)
                return NULL;
        if (d->has_headers_pool)
                empty_amqp_pool(&d->headers_pool);
        command_free(d->dead_letter);
        return mfree(d);
}

AmqpDelivery *amqp_delivery_free(AmqpDelivery *d) {
        delivery_free(delivery_from_public(d));
        return NULL;
}
