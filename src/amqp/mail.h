/* SPDX-License-Identifier: MIT */
#pragma once

/* Private to src/amqp: what crosses between the AMQP thread (amqp/session.c) and the loop
 * (amqp/consumer.c), each in a mailbox of the other side. Events go to the loop, commands to
 * the thread. A delivery is built on the thread and goes to the loop in the event embedded in
 * it; it may go back in a dead-letter command and return in that same event. One side owns it
 * at a time, and handing it over never allocates: the loop hears of every delivery the thread
 * has read and of the end of every dead-letter command, even when the thread is out of memory. */

#include <amqp.h>

#include "amqp/consumer.h"
#include "util/mailbox.h"

typedef struct Command Command;

typedef struct Event {
        MailboxItem item;
        AmqpEvent public; /* what the handler sees */
} Event;

/* One allocation per message: this struct, then the body, then the routing key and the
 * property strings that a dead-letter publish needs again. */
typedef struct Delivery {
        AmqpDelivery public; /* first: the pipeline holds a pointer to it */
        Event event;         /* how it travels to the loop, as a delivery and as a dead-letter result */
        /* The dead-letter command that ended, while its result travels in event: it holds the
         * result's message. Taken by the loop before its handler sees the result. */
        Command *dead_letter;
        amqp_bytes_t routing_key;
        amqp_basic_properties_t properties;
        amqp_pool_t headers_pool; /* the headers table, when the message has one */
        bool has_headers_pool;
        uint8_t data[];
} Delivery;

static inline Delivery *delivery_from_public(AmqpDelivery *d) {
        return d ? container_of(d, Delivery, public) : NULL;
}

/* amqp_delivery_free() for those who hold the whole. */
Delivery *delivery_free(Delivery *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(Delivery *, delivery_free);

typedef enum CommandType {
        COMMAND_SETTLE,
        COMMAND_DEAD_LETTER,
        COMMAND_CANCEL,
} CommandType;

struct Command {
        MailboxItem item;
        CommandType type;
        uint64_t epoch;

        /* COMMAND_DEAD_LETTER */
        Delivery *delivery;
        DeadLetterReason reason;
        /* Why the publish failed or did not happen: written by the thread into room the loop
         * allocated, so that the result needs no memory of its own. */
        char error[256];

        /* COMMAND_SETTLE */
        usec_t queued_at; /* for the ack report (session_set_trace()) */
        size_t n_acks;
        AckCommand acks[];
};

/* An event of its own (not a delivery's): connection changes and warnings. NULL: no memory. */
Event *event_new(AmqpEventType type, uint64_t epoch, bool ok, const char *message);
/* Frees an event of its own; a delivery's event goes with its delivery. */
void event_free(Event *ev);
static inline bool event_is_delivery(const Event *ev) {
        return ev->public.type == AMQP_EVENT_DELIVERY || ev->public.type == AMQP_EVENT_DEAD_LETTERED;
}

/* n_acks: room for so many acks (COMMAND_SETTLE). NULL: no memory. */
Command *command_new(CommandType type, uint64_t epoch, size_t n_acks);
/* Frees the command, and the delivery of a dead-letter command that never ran. */
Command *command_free(Command *cmd);
DEFINE_TRIVIAL_CLEANUP_FUNC(Command *, command_free);
