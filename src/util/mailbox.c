/* SPDX-License-Identifier: MIT */
/* Called from any thread: posters and the reader meet only under the lock. */
#include <pthread.h>
#include <sys/eventfd.h>

#include "util/mailbox.h"

struct Mailbox {
        pthread_mutex_t lock;
        MailboxItem *head, *tail;
        /* Written when the list becomes non-empty and read empty by the take that empties it,
         * both under the lock: readable exactly while something waits. */
        int fd;
};

int mailbox_new(Mailbox **ret) {
        Mailbox *m;

        m = malloc(sizeof *m);
        if (!m)
                return -ENOMEM;
        *m = (Mailbox) { .lock = PTHREAD_MUTEX_INITIALIZER };
        m->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m->fd < 0) {
                int r = negative_errno();
                free(m);
                return r;
        }
        *ret = m;
        return 0;
}

Mailbox *mailbox_free(Mailbox *m) {
        if (!m)
                return NULL;
        safe_close(m->fd);
        (void) pthread_mutex_destroy(&m->lock);
        return mfree(m);
}

int mailbox_fd(const Mailbox *m) {
        return m->fd;
}

void mailbox_post_list(Mailbox *m, MailboxList *list) {
        if (!list->first)
                return;
        list->last->next = NULL;

        (void) pthread_mutex_lock(&m->lock);
        if (m->tail)
                m->tail->next = list->first;
        else {
                m->head = list->first;
                /* The counter is 0 here (the last take read it), so this cannot overflow. */
                (void) eventfd_write(m->fd, 1);
        }
        m->tail = list->last;
        (void) pthread_mutex_unlock(&m->lock);

        *list = (MailboxList) { 0 };
}

void mailbox_post(Mailbox *m, MailboxItem *item) {
        MailboxList list = { 0 };

        mailbox_list_append(&list, item);
        mailbox_post_list(m, &list);
}

MailboxItem *mailbox_take(Mailbox *m) {
        MailboxItem *list;
        eventfd_t ignored;

        (void) pthread_mutex_lock(&m->lock);
        list = m->head;
        m->head = m->tail = NULL;
        if (list)
                (void) eventfd_read(m->fd, &ignored);
        (void) pthread_mutex_unlock(&m->lock);
        return list;
}
