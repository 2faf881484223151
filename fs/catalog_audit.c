/*
 * catalog_audit.c — the audit chain's rows (part of the catalogue module;
 * see catalog_int.h).
 */
#include "catalog_int.h"

const char catalog_audit_ddl[] = "";
