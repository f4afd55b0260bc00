/* SPDX-License-Identifier: MIT */
#pragma once

/* A hand-off from any thread to one reader (the event loop, or a thread of its own): posters
 * append under a mutex, the reader takes the whole list at once, oldest first. An eventfd is
 * readable from the post that makes the list non-empty until the take that empties it, so the
 * reader watches it with an sd-event io source or poll().
 *
 * Items are intrusive: embed a MailboxItem in what is posted and get back to it with
 * container_of(). Posting never allocates and never fails, so a poster that is out of memory
 * can still hand over what it already holds. The mailbox never owns its items: whoever takes
 * them (or, at the end, whoever embedded them) frees them. */

#include "util/util.h"

typedef struct MailboxItem {
        struct MailboxItem *next;
} MailboxItem;

/* A list built without the lock, posted in one go with mailbox_post_list(). */
typedef struct MailboxList {
        MailboxItem *first, *last;
} MailboxList;

typedef struct Mailbox Mailbox;

int mailbox_new(Mailbox **ret);
/* Only once no thread posts any more. Items still in it are left alone (see above). */
Mailbox *mailbox_free(Mailbox *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Mailbox *, mailbox_free);

/* Readable while something is posted and not yet taken. */
int mailbox_fd(const Mailbox *m);

void mailbox_post(Mailbox *m, MailboxItem *item);
/* Appends list's items in their order and empties list; nothing happens when it is empty. */
void mailbox_post_list(Mailbox *m, MailboxList *list);
/* Everything posted so far, oldest first, linked by next (NULL: nothing). */
MailboxItem *mailbox_take(Mailbox *m);

static inline void mailbox_list_append(MailboxList *list, MailboxItem *item) {
        item->next = NULL;
        if (list->last)
                list->last->next = item;
        else
                list->first = item;
        list->last = item;
}
