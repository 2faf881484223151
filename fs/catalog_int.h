/*
 * catalog_int.h — shared internals of the catalogue module.
 *
 * The catalogue is one module split across files by concern: catalog.c
 * (connection, schema, meta, slots, policies), catalog_audit.c (the audit
 * chain's rows), catalog_subjects.c (subjects and the erasure ledger).
 * Only these files include <sqlite3.h>; everything else sees catalog.h.
 * Each concern file contributes its tables to schema version 1 through a
 * catalog_*_ddl string that catalog.c runs when it creates a store.
 */
#ifndef CUSTODIAN_CATALOG_INT_H
#define CUSTODIAN_CATALOG_INT_H

#include <stddef.h>
#include <pthread.h>
#include <stdint.h>

#include <sqlite3.h>

#include "catalog.h"

/* One open connection. */
struct catalog {
	sqlite3 *db; /* serialized (FULLMUTEX) connection */
	int rdonly;  /* refuse writes: opened read-only, or the file only allows it */
	pthread_mutex_t stmt_lock;  /* guards the cached statements below */
	sqlite3_stmt *audit_insert; /* the audit writer's INSERT, prepared once
				       (per-record prepare was most of an
				       insert's cost); stmt_lock */
};

/* Tables of each concern file (SQL, may hold several statements). */
extern const char catalog_audit_ddl[];
extern const char catalog_audit_ddl_v2[];
extern const char catalog_subjects_ddl[];
extern const char catalog_retention_ddl[];

/* The one mapping of SQLite result codes to -errno. */
int catalog_errno(sqlite3 *db, int rc);

/* Prepares one statement; *st is NULL on failure. */
int catalog_prep(struct catalog *cat, const char *sql, sqlite3_stmt **st);

/* Runs SQL that returns no rows we need (pragmas, DDL, transactions). */
int catalog_exec(struct catalog *cat, const char *sql);

/* Steps a statement to completion, ignoring rows (INSERT/UPDATE). */
int catalog_step_done(struct catalog *cat, sqlite3_stmt *st);

/* Steps st once for the row a lookup expects: 0 with the row current,
 * -ENOENT if there is none, -errno on error. */
int catalog_step_row(struct catalog *cat, sqlite3_stmt *st);

/* Column decoding: wrong type or size means the row is damaged (-EIO). */
int catalog_col_text(sqlite3_stmt *st, int i, char *out, size_t cap);
int catalog_col_blob(sqlite3_stmt *st, int i, void *out, size_t n, int null_ok);
int catalog_col_int(sqlite3_stmt *st, int i, int64_t *out, int null_ok, int signed_ok);

/* Steps st to its end, decoding each row with decode() into a growing
 * malloc'd array of size-byte elements (*out, *n; NULL and 0 for no rows).
 * Always finalizes st.  0 or the first error (the array is then freed). */
int catalog_collect(struct catalog *cat, sqlite3_stmt *st, size_t size,
		    int (*decode)(sqlite3_stmt *st, void *elem), void **out, size_t *n);

/* A C string that fits (with its NUL) in a field of cap bytes. */
int catalog_field_ok(const char *s, size_t cap);

#endif
