/*
 * mailbox.h -- how another thread hands work back to an event loop.
 *
 * The log's threads finish durable writes (pending.c) and the catalog worker finishes
 * catalog changes (catalog.c) on threads of their own, but what follows must run on the
 * loop that owns the client. Each loop therefore has a mailbox per kind of work: a list
 * under a mutex and an eventfd the loop's epoll set watches. Any thread posts; only the
 * loop takes, and it takes everything at once, in the order it was posted.
 *
 * Invariant: the eventfd is written when a post finds the list empty, and the loop reads
 * the eventfd before it takes the list. So a post that comes after the loop's read finds
 * either the list not yet taken (the loop takes it now) or the list empty (the post
 * writes the eventfd again): no item waits for a wakeup that never comes.
 *
 * Items embed a mailbox_link; mailbox_item turns a link back into its item.
 */
#ifndef SHOAL_SERVER_MAILBOX_H
#define SHOAL_SERVER_MAILBOX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct mailbox_link {
    struct mailbox_link *next;
} mailbox_link;

typedef struct mailbox {
    pthread_mutex_t lock;       /* guards head and tail only */
    mailbox_link *head, *tail;  /* posted, not yet taken; head also read by mailbox_ready */
    int event_fd;
} mailbox;

#define mailbox_item(link, type, member) \
    ((type *)(void *)((char *)(link) - offsetof(type, member)))

/* Returns 0, or -1 when no eventfd could be made. Thread-safety: at startup. */
static inline int mailbox_init(mailbox *m)
{
    m->head = m->tail = NULL;
    m->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (m->event_fd < 0)
        return -1;
    pthread_mutex_init(&m->lock, NULL);
    return 0;
}

/* Only once nothing can post any more. */
static inline void mailbox_destroy(mailbox *m)
{
    close(m->event_fd);
    pthread_mutex_destroy(&m->lock);
}

/* Appends an item and wakes the loop if it was not due to look already. Any thread. */
static inline void mailbox_post(mailbox *m, mailbox_link *link)
{
    link->next = NULL;
    pthread_mutex_lock(&m->lock);
    int was_empty = m->head == NULL;
    if (was_empty)
        __atomic_store_n(&m->head, link, __ATOMIC_RELAXED); /* see mailbox_ready */
    else
        m->tail->next = link;
    m->tail = link;
    pthread_mutex_unlock(&m->lock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t ignored = write(m->event_fd, &one, sizeof(one));
        (void)ignored;
    }
}

/* True when something was posted and not taken yet, as far as a load without the lock
 * sees: a hint for a loop that looks between events (a stale false is caught by the
 * eventfd; a true is followed by mailbox_take). Loop thread. */
static inline bool mailbox_ready(mailbox *m)
{
    return __atomic_load_n(&m->head, __ATOMIC_RELAXED) != NULL;
}

/* Takes every item posted so far, oldest first (linked through next). Loop thread. */
static inline mailbox_link *mailbox_take(mailbox *m)
{
    uint64_t value;
    ssize_t ignored = read(m->event_fd, &value, sizeof(value));
    (void)ignored;
    pthread_mutex_lock(&m->lock);
    mailbox_link *taken = m->head;
    __atomic_store_n(&m->head, NULL, __ATOMIC_RELAXED);
    m->tail = NULL;
    pthread_mutex_unlock(&m->lock);
    return taken;
}

#endif /* SHOAL_SERVER_MAILBOX_H */
