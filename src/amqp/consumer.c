/* SPDX-License-Identifier: MIT */
/* The loop's side of the RabbitMQ adapter (amqp/consumer.h): runs on the event loop only. It
 * turns the pipeline's calls into commands for the AMQP thread (amqp/session.c) and hands the
 * thread's events to the pipeline from an sd-event source on its mailbox. It never calls
 * rabbitmq-c, apart from freeing a delivery's copy of its headers. */
#include "amqp/consumer.h"
#include "amqp/mail.h"
#include "amqp/session.h"
#include "util/mailbox.h"

struct AmqpConsumer {
        sd_event *event;
        sd_event_source *event_source;
        AmqpEventHandler handler;
        void *userdata;

        Mailbox *events; /* the thread posts, the loop takes */
        Session *session;
};

static int on_events(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        AmqpConsumer *c = userdata;

        for (MailboxItem *i = mailbox_take(c->events), *next; i; i = next) {
                Event *ev = container_of(i, Event, item);
                _cleanup_(command_freep) Command *dead_letter = NULL;
                bool own = !event_is_delivery(ev);

                next = i->next;
                /* A delivery's event is part of it, and the handler may free it right away; a
                 * dead-letter result's message is in the command, freed only afterwards. */
                if (ev->public.type == AMQP_EVENT_DEAD_LETTERED)
                        dead_letter = TAKE_PTR(delivery_from_public(ev->public.delivery)->dead_letter);
                c->handler(c, &ev->public, c->userdata);
                if (own)
                        event_free(ev);
        }
        return 0;
}

int amqp_consumer_new(sd_event *e, const AmqpSettings *settings, AmqpEventHandler handler, void *userdata,
                      AmqpConsumer **ret) {
        _cleanup_(amqp_consumer_freep) AmqpConsumer *c = NULL;
        int r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        *c = (AmqpConsumer) {
                .event = sd_event_ref(e),
                .handler = handler,
                .userdata = userdata,
        };

        r = mailbox_new(&c->events);
        if (r < 0)
                return r;
        r = session_new(settings, c->events, &c->session);
        if (r < 0)
                return r;

        r = sd_event_add_io(e, &c->event_source, mailbox_fd(c->events), EPOLLIN, on_events, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->event_source, "amqp-events");

        *ret = TAKE_PTR(c);
        return 0;
}

int amqp_consumer_start(AmqpConsumer *c) {
        return session_start(c->session);
}

AmqpConsumer *amqp_consumer_free(AmqpConsumer *c) {
        if (!c)
                return NULL;

        /* The thread first: it posts events until it ends. */
        c->session = session_free(c->session);

        /* Events nobody will handle now: their deliveries go back to the broker with the connection. */
        if (c->events)
                for (MailboxItem *i = mailbox_take(c->events), *next; i; i = next) {
                        Event *ev = container_of(i, Event, item);
                        AmqpDelivery *d = ev->public.delivery;

                        next = i->next;
                        event_free(ev);
                        amqp_delivery_free(d); /* a delivery's own event goes with it */
                }

        sd_event_source_disable_unref(c->event_source);
        mailbox_free(c->events);
        sd_event_unref(c->event);
        return mfree(c);
}

int amqp_consumer_settle(AmqpConsumer *c, uint64_t epoch, const AckCommand *commands, size_t n) {
        Command *cmd;

        if (n == 0)
                return 0;
        cmd = command_new(COMMAND_SETTLE, epoch, n);
        if (!cmd)
                return -ENOMEM;
        memcpy(cmd->acks, commands, n * sizeof *commands);
        cmd->queued_at = now(CLOCK_MONOTONIC);
        session_post(c->session, cmd);
        return 0;
}

int amqp_consumer_dead_letter(AmqpConsumer *c, AmqpDelivery *d, const DeadLetterReason *reason) {
        Command *cmd;

        cmd = command_new(COMMAND_DEAD_LETTER, d->epoch, 0);
        if (!cmd)
                return -ENOMEM;
        cmd->delivery = delivery_from_public(d);
        cmd->reason = *reason;
        session_post(c->session, cmd);
        return 0;
}

int amqp_consumer_cancel(AmqpConsumer *c) {
        Command *cmd;

        cmd = command_new(COMMAND_CANCEL, 0, 0);
        if (!cmd)
                return -ENOMEM;
        session_set_cancelled(c->session);
        session_post(c->session, cmd);
        return 0;
}

void amqp_consumer_set_trace(AmqpConsumer *c, bool trace) {
        session_set_trace(c->session, trace);
}
