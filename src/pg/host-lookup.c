/* SPDX-License-Identifier: MIT */
/* host_lookup_start() starts a detached thread per lookup: it touches only its Job (names in,
 * answers out, the done item posted to the job's mailbox). Everything else runs on the loop. */
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "pg/host-lookup.h"
#include "util/mailbox.h"

/* What the thread writes for one name; the loop reads it once the done item is in the mailbox. */
typedef struct Answer {
        char *addresses[HOST_LOOKUP_ADDRESSES_MAX];
        size_t n_addresses;
        char error[128];
} Answer;

/* What the thread and the loop share; the last of the two to let go frees it, so that an
 * abandoned lookup's thread still has somewhere to write, the mailbox included. */
typedef struct Job {
        atomic_int refs;
        Mailbox *mailbox; /* the thread posts done to it when every name has an answer */
        MailboxItem done;
        size_t n;
        char **names;
        Answer answers[];
} Job;

struct HostLookup {
        Job *job;
        sd_event_source *source;
        HostLookupDone done;
        void *userdata;
};

static void job_unref(Job *j) {
        if (!j || atomic_fetch_sub(&j->refs, 1) > 1)
                return;
        for (size_t i = 0; i < j->n; i++) {
                free(j->names[i]);
                for (size_t k = 0; k < j->answers[i].n_addresses; k++)
                        free(j->answers[i].addresses[k]);
        }
        free(j->names);
        mailbox_free(j->mailbox);
        free(j);
}

static void lookup_one(const char *name, Answer *a) {
        /* As libpq asks: every family, no flags. */
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
        int r = getaddrinfo(name, NULL, &hints, &res);

        if (r != 0) {
                snprintf(a->error, sizeof a->error, "%s", r == EAI_SYSTEM ? STRERROR(errno) : gai_strerror(r));
                return;
        }
        for (const struct addrinfo *ai = res; ai && a->n_addresses < HOST_LOOKUP_ADDRESSES_MAX; ai = ai->ai_next) {
                char text[INET6_ADDRSTRLEN];
                const void *addr = ai->ai_family == AF_INET6 ? (const void *) &((struct sockaddr_in6 *) ai->ai_addr)->sin6_addr
                                   : ai->ai_family == AF_INET ? (const void *) &((struct sockaddr_in *) ai->ai_addr)->sin_addr
                                                              : NULL;
                bool seen = false;

                if (!addr || !inet_ntop(ai->ai_family, addr, text, sizeof text))
                        continue;
                for (size_t k = 0; k < a->n_addresses; k++)
                        seen = seen || streq(a->addresses[k], text);
                if (seen)
                        continue;
                a->addresses[a->n_addresses] = strdup(text);
                if (a->addresses[a->n_addresses])
                        a->n_addresses++;
        }
        freeaddrinfo(res);
        if (a->n_addresses == 0)
                snprintf(a->error, sizeof a->error, "no IPv4 or IPv6 address");
}

static void *lookup_thread(void *userdata) {
        Job *j = userdata;

        for (size_t i = 0; i < j->n; i++)
                if (!isempty(j->names[i]))
                        lookup_one(j->names[i], &j->answers[i]);
        mailbox_post(j->mailbox, &j->done);
        job_unref(j);
        return NULL;
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HostLookup *l = userdata;

        /* The one item there is, embedded in the job: nothing to free. */
        if (!mailbox_take(l->job->mailbox))
                return 0;
        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        l->done(l, l->userdata);
        return 0;
}

int host_lookup_start(sd_event *e, const char *const *names, size_t n, HostLookupDone done, void *userdata,
                      HostLookup **ret) {
        _cleanup_(host_lookup_freep) HostLookup *l = NULL;
        pthread_attr_t attr;
        pthread_t thread;
        Job *j;
        int r;

        l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        l->done = done;
        l->userdata = userdata;

        j = calloc(1, sizeof *j + n * sizeof j->answers[0]);
        if (!j)
                return -ENOMEM;
        atomic_init(&j->refs, 1);
        j->n = n;
        l->job = j;
        j->names = calloc(n, sizeof *j->names);
        if (!j->names)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                j->names[i] = strdup(names[i]);
                if (!j->names[i])
                        return -ENOMEM;
        }
        r = mailbox_new(&j->mailbox);
        if (r < 0)
                return r;

        r = sd_event_add_io(e, &l->source, mailbox_fd(j->mailbox), EPOLLIN, on_done, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(l->source, "host-lookup");

        r = -pthread_attr_init(&attr);
        if (r < 0)
                return r;
        r = -pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (r == 0) {
                atomic_fetch_add(&j->refs, 1);
                r = -pthread_create(&thread, &attr, lookup_thread, j);
                if (r < 0)
                        atomic_fetch_sub(&j->refs, 1);
        }
        (void) pthread_attr_destroy(&attr);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(l);
        return 0;
}

char *const *host_lookup_addresses(const HostLookup *l, size_t i, size_t *n_ret) {
        *n_ret = l->job->answers[i].n_addresses;
        return l->job->answers[i].addresses;
}

const char *host_lookup_error(const HostLookup *l, size_t i) {
        return isempty(l->job->answers[i].error) ? NULL : l->job->answers[i].error;
}

HostLookup *host_lookup_free(HostLookup *l) {
        if (!l)
                return NULL;
        /* The source goes before the job: it watches the job's mailbox. */
        sd_event_source_disable_unref(l->source);
        job_unref(l->job);
        return mfree(l);
}
