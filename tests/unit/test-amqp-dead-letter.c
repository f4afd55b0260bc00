/* SPDX-License-Identifier: MIT */
/* The end of a dead-letter command always reaches the loop, even when the AMQP thread has no
 * memory left: the pipeline counts dead-letter publishes in flight and waits for them to come
 * back (at shutdown, among others). No broker: the consumer is pointed at a port where nothing
 * listens, so its thread sits in its reconnect backoff and answers the command with "the
 * connection to RabbitMQ is gone". */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "amqp/consumer.h"
#include "amqp/mail.h"

#if defined(__SANITIZE_ADDRESS__)
#  define ALLOCATION_FAILURES 0 /* ASan owns malloc: no interposing it here */
#else
#  define ALLOCATION_FAILURES 1

/* While fail_others is set, every allocation fails on any thread but the test's own. glibc
 * sends its own allocations (strdup, ...) through these as well. */
static atomic_bool fail_others;
static atomic_uint failures;
static pthread_t test_thread;

void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);

static bool fail_here(void) {
        if (!atomic_load(&fail_others) || pthread_equal(pthread_self(), test_thread))
                return false;
        atomic_fetch_add(&failures, 1);
        return true;
}

void *malloc(size_t size) {
        return fail_here() ? NULL : __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
        return fail_here() ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t size) {
        return fail_here() ? NULL : __libc_realloc(p, size);
}
#endif

typedef struct Seen {
        unsigned disconnected;
        unsigned dead_lettered;
        bool ok;
        char message[256];
        AmqpDelivery *delivery;
} Seen;

static void on_event(AmqpConsumer *c, AmqpEvent *ev, void *userdata) {
        Seen *seen = userdata;

        switch (ev->type) {
        case AMQP_EVENT_DISCONNECTED:
                seen->disconnected++;
                break;
        case AMQP_EVENT_DEAD_LETTERED: {
                /* The event is part of the delivery; the message is not. */
                const char *message = ev->message;

                seen->dead_lettered++;
                seen->ok = ev->ok;
                seen->delivery = ev->delivery;
                /* As the pipeline does: the handler frees the delivery, and uses the message after. */
                amqp_delivery_free(ev->delivery);
                snprintf(seen->message, sizeof seen->message, "%s", strempty(message));
                break;
        }
        case AMQP_EVENT_DELIVERY:
                amqp_delivery_free(ev->delivery);
                break;
        default:
                break;
        }
}

static const AmqpSettings settings = {
        /* Port 1 on the loopback: refused at once, nothing to wait for. */
        .url = "amqp://guest:guest@127.0.0.1:1/",
        .exchange = "test.events",
        .queue = "test.approved",
        .dead_letter_exchange = "test.dlx",
        .queue_type = QUEUE_TYPE_CLASSIC,
        .prefetch = 10,
        .heartbeat_s = 0,
        .connect_timeout_s = 1,
        .instance_id = "test",
};

/* A delivery as the thread makes them, without a broker: one allocation, no properties. */
static AmqpDelivery *delivery_new(void) {
        static const char body[] = "{\"id\":\"1\"}";
        Delivery *d = calloc(1, sizeof *d + sizeof body);

        cr_assert_not_null(d);
        memcpy(d->data, body, sizeof body);
        d->public = (AmqpDelivery) { .epoch = 1, .tag = 7, .body = d->data, .body_size = sizeof body - 1 };
        d->event.public = (AmqpEvent) { .type = AMQP_EVENT_DELIVERY, .epoch = 1, .delivery = &d->public };
        d->properties.headers = amqp_empty_table;
        return &d->public;
}

/* Runs the loop until the dead-letter result is there (and, with until_failures, until the
 * thread failed to allocate as well), or 20 s pass. */
static void run_until_dead_lettered(sd_event *e, Seen *seen, bool until_failures) {
        usec_t deadline = now(CLOCK_MONOTONIC) + 20 * USEC_PER_SEC;

        while (now(CLOCK_MONOTONIC) < deadline) {
                bool failed = true;
#if ALLOCATION_FAILURES
                failed = atomic_load(&failures) > 0;
#endif
                if (seen->dead_lettered > 0 && (!until_failures || failed))
                        return;
                cr_assert_geq(sd_event_run(e, 100 * USEC_PER_MSEC), 0);
        }
}

static void dead_letter_one(bool out_of_memory) {
        sd_event *e = NULL;
        AmqpConsumer *c = NULL;
        AmqpDelivery *d;
        Seen seen = { 0 };
        DeadLetterReason reason = { .reason = "not_json" };

        cr_assert_geq(sd_event_new(&e), 0);
        cr_assert_eq(amqp_consumer_new(e, &settings, on_event, &seen, &c), 0);
        cr_assert_eq(amqp_consumer_start(c), 0);

        /* Its first connect attempt failed: the thread is in its backoff now. */
        while (seen.disconnected == 0)
                cr_assert_geq(sd_event_run(e, 100 * USEC_PER_MSEC), 0);

        d = delivery_new();
#if ALLOCATION_FAILURES
        test_thread = pthread_self();
        atomic_store(&fail_others, out_of_memory);
#endif
        cr_assert_eq(amqp_consumer_dead_letter(c, d, &reason), 0);
        run_until_dead_lettered(e, &seen, out_of_memory);
#if ALLOCATION_FAILURES
        atomic_store(&fail_others, false);
        if (out_of_memory)
                cr_assert_gt(atomic_load(&failures), 0, "the AMQP thread never tried to allocate");
        cr_log_info("allocations failed on the AMQP thread: %u", atomic_load(&failures));
#endif

        cr_assert_eq(seen.dead_lettered, 1, "the dead-letter command's end never reached the loop");
        cr_assert_eq(seen.delivery, d, "the result hands back the delivery that was sent");
        cr_assert_not(seen.ok);
        cr_assert_str_eq(seen.message, "the connection to RabbitMQ is gone");

        amqp_consumer_free(c);
        sd_event_unref(e);
}

Test(amqp_dead_letter, result_reaches_the_loop, .timeout = 60) {
        dead_letter_one(false);
}

Test(amqp_dead_letter, result_reaches_the_loop_out_of_memory, .timeout = 60) {
        if (!ALLOCATION_FAILURES)
                cr_skip_test("allocations cannot be made to fail under AddressSanitizer");
        dead_letter_one(true);
}

/* Commands and events nobody handled are freed with the consumer (the leak check of the
 * sanitized build watches this one). */
Test(amqp_dead_letter, left_over_at_free, .timeout = 60) {
        sd_event *e = NULL;
        AmqpConsumer *c = NULL;
        Seen seen = { 0 };
        DeadLetterReason reason = { .reason = "too_large" };
        AckCommand ack = { .kind = SETTLE_ACK, .tag = 1 };

        cr_assert_geq(sd_event_new(&e), 0);
        cr_assert_eq(amqp_consumer_new(e, &settings, on_event, &seen, &c), 0);
        /* Never started: everything stays in the mailboxes. */
        cr_assert_eq(amqp_consumer_dead_letter(c, delivery_new(), &reason), 0);
        cr_assert_eq(amqp_consumer_settle(c, 1, &ack, 1), 0);
        cr_assert_eq(amqp_consumer_cancel(c), 0);
        amqp_consumer_free(c);

        /* Started, then freed with the result of a dead-letter command still in the loop's mailbox. */
        cr_assert_eq(amqp_consumer_new(e, &settings, on_event, &seen, &c), 0);
        cr_assert_eq(amqp_consumer_start(c), 0);
        cr_assert_eq(amqp_consumer_dead_letter(c, delivery_new(), &reason), 0);
        amqp_consumer_free(c);
        cr_assert_eq(seen.dead_lettered, 0);
        sd_event_unref(e);
}
