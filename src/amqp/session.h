/* SPDX-License-Identifier: MIT */
#pragma once

/* Private to src/amqp: the AMQP thread. It owns the rabbitmq-c connection (connect, login,
 * topology, consume, reading frames and assembling deliveries, dead-letter publishes under
 * publisher confirms, acks and nacks) and reconnects with a backoff until it is stopped. It
 * posts events (amqp/mail.h) to the loop's mailbox and runs the commands posted to its own.
 *
 * Each successful connect starts a new epoch. Commands of another epoch than the current one
 * are dropped (a dead-letter command returns its delivery unpublished): their deliveries came
 * on a connection that is gone, and the broker has requeued them. */

#include "amqp/consumer.h"
#include "amqp/mail.h"
#include "util/mailbox.h"

typedef struct Session Session;

/* events: where the thread posts; it must outlive the session. */
int session_new(const AmqpSettings *settings, Mailbox *events, Session **ret);
int session_start(Session *s);
/* Stops the thread (breaking its socket if it is stuck towards a frozen broker) and frees
 * the commands it did not run, with their deliveries. */
Session *session_free(Session *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Session *, session_free);

/* From the loop. The session takes the command. */
void session_post(Session *s, Command *cmd);
/* Consume no more, on this connection (a COMMAND_CANCEL does that) and on every later one. */
void session_set_cancelled(Session *s);
/* Post an AMQP_EVENT_ACKS_SENT for every ack command, with the next delivery read after it. */
void session_set_trace(Session *s, bool trace);
