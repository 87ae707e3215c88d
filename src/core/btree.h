/*
 * btree.h -- the ordered index of one (namespace, shard) pair: a B+tree that maps byte-string
 * keys to opaque value pointers (the newest version object of each key).
 *
 * The tree does not copy keys into its leaves. A leaf keeps the leading bytes all its keys
 * share (its head, up to 32 bytes) once, and each slot holds the next 8 key bytes as a
 * big-endian integer and the value pointer; the full key of a slot is read from its value
 * through the btree_key_fn given to btree_new(). So a value's key bytes must not change, and
 * must stay readable, for as long as the value is in the tree.
 *
 * Keys are 0..65536 bytes and are ordered as unsigned bytes (memcmp order, a proper prefix
 * first). Errors are 0 or a negative errno (-ENOMEM).
 *
 * Thread-safety: none. The caller serializes every call on one tree (the shard's lock); a
 * read-only call (btree_get, the seek and cursor calls, btree_count, btree_memory,
 * btree_check) may run concurrently with other read-only calls only. Different trees are
 * independent.
 *
 * The design, the node sizes and their measurements are described at the top of btree.c.
 */
#ifndef SHOAL_CORE_BTREE_H
#define SHOAL_CORE_BTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns the key of a value stored in the tree. The bytes must stay valid while the value is in the tree. */
typedef const void *(*btree_key_fn)(const void *value, uint32_t *len);

struct btree;

/* Returns NULL when out of memory. */
struct btree *btree_new(btree_key_fn key_of);
/* Frees the tree's nodes (not the values). NULL is a no-op. */
void btree_free(struct btree *tree);

/* Returns the value stored under key, or NULL. */
void *btree_get(const struct btree *tree, const void *key, uint32_t klen);

/* Finds the slot of key, inserting an empty one (value NULL) when the key is absent, and returns a
 * pointer to the slot's value cell in *slot; *created says whether it was inserted. When created, the
 * caller must store a value whose key equals `key` in *slot before any other call on the tree.
 * Returns 0 or -ENOMEM (then nothing changed). One traversal: this is the write path. */
int btree_upsert(struct btree *tree, const void *key, uint32_t klen, void ***slot, bool *created);

/* Removes key; returns its value, or NULL when absent. Underfull nodes are merged or rebalanced
 * (nodes stay at least ~1/3 full; the root shrinks). */
void *btree_remove(struct btree *tree, const void *key, uint32_t klen);

size_t btree_count(const struct btree *tree);   /* keys in the tree */
size_t btree_memory(const struct btree *tree);  /* bytes held by nodes and separator copies */
/* btree_memory over the keys, counting at least a leaf's worth: a tree of a few keys is
 * mostly the fixed size of its one leaf, not theirs (MEMORY USAGE). */
size_t btree_bytes_per_key(const struct btree *tree);
/* Checks every structural invariant (order, fill, separators, leaf links, counts); returns 0 or -1
 * and is used by tests. */
int btree_check(const struct btree *tree);

/* A position in the tree. Valid until the tree is modified. */
struct btree_cursor {
    const struct btree *tree;
    void *leaf;
    int pos;
};
/* Positions at the first key >= key (key NULL: the first key). */
void btree_seek_ge(const struct btree *tree, struct btree_cursor *c, const void *key, uint32_t klen);
/* Positions at the last key < key (key NULL: the last key). */
void btree_seek_lt(const struct btree *tree, struct btree_cursor *c, const void *key, uint32_t klen);
bool btree_cursor_valid(const struct btree_cursor *c);
void *btree_cursor_value(const struct btree_cursor *c);
void btree_next(struct btree_cursor *c);
void btree_prev(struct btree_cursor *c);

/* ---- additions to the interface above ------------------------------------------------ */

/* Leaf runs, for scans that read many consecutive entries under one lock: the values of
 * the (valid) cursor's leaf, *count of them in key order, the cursor's entry at index
 * c->pos. Reading them in place costs no call per entry; the array is valid only until the
 * tree changes. btree_cursor_next_leaf moves to the first entry of the next leaf (reverse:
 * the last entry of the previous one), or makes the cursor invalid at the end;
 * btree_cursor_prefetch_neighbor starts loading that leaf, so that the scan does not wait
 * for it when it gets there (leaves are placed in memory in allocation order, not in key
 * order). */
void *const *btree_cursor_leaf_values(const struct btree_cursor *c, uint32_t *count);
void btree_cursor_next_leaf(struct btree_cursor *c, bool reverse);
void btree_cursor_prefetch_neighbor(const struct btree_cursor *c, bool reverse);

/* Returns the key of the cursor's entry (through the tree's btree_key_fn) and its length in
 * *len. The cursor must be valid. The bytes belong to the value, not to the tree. */
const void *btree_cursor_key(const struct btree_cursor *c, uint32_t *len);

/* Returns the tree's depth: 0 when empty, 1 when the root is a leaf. Cost O(1). */
unsigned btree_height(const struct btree *tree);

/* Test hook: the tree's next `after` allocations succeed and every later one fails, until
 * the hook is called again; after < 0 turns failures off (the default). Used to show that a
 * failed btree_upsert changes nothing and that btree_remove stays correct when it cannot
 * allocate a separator. */
void btree_fail_allocations_after(struct btree *tree, long after);

#endif /* SHOAL_CORE_BTREE_H */
