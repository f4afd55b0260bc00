/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>

#include "util/mailbox.h"

typedef struct Letter {
        MailboxItem item;
        unsigned poster;
        unsigned seq;
} Letter;

static bool readable(Mailbox *m, int timeout_ms) {
        struct pollfd p = { .fd = mailbox_fd(m), .events = POLLIN };
        int r = poll(&p, 1, timeout_ms);

        cr_assert_geq(r, 0);
        return r > 0 && (p.revents & POLLIN);
}

Test(mailbox, empty) {
        _cleanup_(mailbox_freep) Mailbox *m = NULL;
        MailboxList list = { 0 };

        cr_assert_eq(mailbox_new(&m), 0);
        cr_assert_null(mailbox_take(m));
        cr_assert_not(readable(m, 0));

        mailbox_post_list(m, &list); /* an empty list posts nothing */
        cr_assert_not(readable(m, 0));
        cr_assert_null(mailbox_take(m));
}

Test(mailbox, order_and_signal) {
        _cleanup_(mailbox_freep) Mailbox *m = NULL;
        Letter letters[5];
        MailboxList list = { 0 };
        MailboxItem *i;
        unsigned n = 0;

        cr_assert_eq(mailbox_new(&m), 0);
        for (unsigned k = 0; k < ELEMENTSOF(letters); k++)
                letters[k] = (Letter) { .seq = k };

        mailbox_post(m, &letters[0].item);
        cr_assert(readable(m, 0));
        mailbox_post(m, &letters[1].item);
        mailbox_list_append(&list, &letters[2].item);
        mailbox_list_append(&list, &letters[3].item);
        mailbox_post_list(m, &list);
        cr_assert_null(list.first, "a posted list is emptied");
        mailbox_post(m, &letters[4].item);
        cr_assert(readable(m, 0));

        i = mailbox_take(m);
        cr_assert_not(readable(m, 0), "the take that empties the mailbox clears the eventfd");
        for (; i; i = i->next)
                cr_assert_eq(container_of(i, Letter, item)->seq, n++);
        cr_assert_eq(n, ELEMENTSOF(letters));
        cr_assert_null(mailbox_take(m));

        /* And again after it was emptied: the next post signals anew. */
        mailbox_post(m, &letters[0].item);
        cr_assert(readable(m, 0));
        cr_assert_eq(mailbox_take(m), &letters[0].item);
        cr_assert_null(letters[0].item.next);
        cr_assert_not(readable(m, 0));
}

#define POSTERS 4
#define LETTERS_EACH 50000

typedef struct Poster {
        Mailbox *mailbox;
        Letter *letters;
        unsigned index;
} Poster;

static void *poster_thread(void *userdata) {
        Poster *p = userdata;

        for (unsigned k = 0; k < LETTERS_EACH;) {
                /* Mix single posts and lists of up to 7, so both paths race with the reader. */
                unsigned n = MIN(k % 8, LETTERS_EACH - k);

                if (n == 0) {
                        p->letters[k] = (Letter) { .poster = p->index, .seq = k };
                        mailbox_post(p->mailbox, &p->letters[k].item);
                        k++;
                        continue;
                }
                MailboxList list = { 0 };
                for (unsigned j = 0; j < n; j++, k++) {
                        p->letters[k] = (Letter) { .poster = p->index, .seq = k };
                        mailbox_list_append(&list, &p->letters[k].item);
                }
                mailbox_post_list(p->mailbox, &list);
                /* Let the reader in between, so that takes race with posts (2 cores). */
                if (k % 64 < 8)
                        sched_yield();
        }
        return NULL;
}

Test(mailbox, concurrent_posters, .timeout = 60) {
        _cleanup_(mailbox_freep) Mailbox *m = NULL;
        pthread_t threads[POSTERS];
        Poster posters[POSTERS];
        unsigned next_seq[POSTERS] = { 0 };
        size_t received = 0, takes = 0;

        cr_assert_eq(mailbox_new(&m), 0);
        for (unsigned t = 0; t < POSTERS; t++) {
                posters[t] = (Poster) { .mailbox = m, .letters = calloc(LETTERS_EACH, sizeof(Letter)), .index = t };
                cr_assert_not_null(posters[t].letters);
        }
        for (unsigned t = 0; t < POSTERS; t++)
                cr_assert_eq(pthread_create(&threads[t], NULL, poster_thread, &posters[t]), 0);

        /* The reader relies on the eventfd alone: a post it is not woken for stalls the test. */
        while (received < (size_t) POSTERS * LETTERS_EACH) {
                MailboxItem *i;

                cr_assert(readable(m, 10000), "letters posted but the eventfd stayed silent (%zu received)",
                          received);
                i = mailbox_take(m);
                takes += !!i;
                for (; i; i = i->next) {
                        const Letter *l = container_of(i, Letter, item);

                        cr_assert_lt(l->poster, POSTERS);
                        cr_assert_eq(l->seq, next_seq[l->poster], "poster %u: letter %u arrived, %u expected",
                                     l->poster, l->seq, next_seq[l->poster]);
                        next_seq[l->poster]++;
                        received++;
                }
        }
        for (unsigned t = 0; t < POSTERS; t++) {
                cr_assert_eq(pthread_join(threads[t], NULL), 0);
                cr_assert_eq(next_seq[t], LETTERS_EACH);
                free(posters[t].letters);
        }
        cr_assert_null(mailbox_take(m));
        cr_assert_not(readable(m, 0));
        cr_log_info("%zu letters in %zu takes", received, takes);
}
