/*
 * catalog_subjects.c — data subjects and the erasure ledger (part of the
 * catalogue module; see catalog_int.h).
 */
#include "catalog_int.h"

const char catalog_subjects_ddl[] = "";
