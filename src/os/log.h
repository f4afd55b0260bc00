/* SPDX-License-Identifier: MIT */
#pragma once

/* Logging: the journal's native protocol when stderr is connected to journald,
 * "<N>message" lines on stderr otherwise. Thread-safe; formats on the stack. */

#include "core/log-level.h"
#include "util/util.h"

#define LOG_FIELD_MAX 512
#define LOG_MESSAGE_MAX 2048

/* MESSAGE_ID values for the few events an operator alerts on. */
#define MESSAGE_ID_BATCH_FAILED     "9a5bd7c2e0f14d4f8b1e3a64c1f0b201"
#define MESSAGE_ID_CIRCUIT_OPENED   "9a5bd7c2e0f14d4f8b1e3a64c1f0b202"
#define MESSAGE_ID_CIRCUIT_CLOSED   "9a5bd7c2e0f14d4f8b1e3a64c1f0b203"
#define MESSAGE_ID_BROKER_LOST      "9a5bd7c2e0f14d4f8b1e3a64c1f0b204"
#define MESSAGE_ID_BROKER_REGAINED  "9a5bd7c2e0f14d4f8b1e3a64c1f0b205"
#define MESSAGE_ID_DATABASE_LOST    "9a5bd7c2e0f14d4f8b1e3a64c1f0b206"
#define MESSAGE_ID_DATABASE_REGAINED "9a5bd7c2e0f14d4f8b1e3a64c1f0b207"
#define MESSAGE_ID_DEAD_LETTERED    "9a5bd7c2e0f14d4f8b1e3a64c1f0b208"

/* An error code made up at the place it is logged, not one a call returned. */
#define SYNTHETIC_ERRNO(e) (-(e))

/* Decides between journal and stderr; call once at start, before threads exist. */
void log_setup(void);
void log_set_max_level(int level);
int log_get_max_level(void);
bool log_to_journal(void);

/* Both return 0 when error is 0, else -abs(error), so callers can "return log_...errno(r, ...)". */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);

/* fields: "NAME=value" strings, the first being "MESSAGE=...", terminated by NULL. */
int log_struct_internal(int level, int error, const char *file, int line, const char *func, ...)
        __attribute__((sentinel));

const char *log_field_format(char *buf, size_t size, const char *format, ...) _printf_(3, 4);

#define LOG_FIELD(...) log_field_format((char[LOG_FIELD_MAX]){0}, LOG_FIELD_MAX, __VA_ARGS__)
/* The first argument must be a string literal: it is pasted after "MESSAGE=". */
#define LOG_MESSAGE(...) log_field_format((char[LOG_MESSAGE_MAX]){0}, LOG_MESSAGE_MAX, "MESSAGE=" __VA_ARGS__)
#define LOG_MESSAGE_ID(id) "MESSAGE_ID=" id

#define log_full_errno(level, error, ...)                                                        \
        (log_get_max_level() >= (level)                                                          \
                 ? log_internal((level), (error), __FILE__, __LINE__, __func__, __VA_ARGS__)     \
                 : ((error) == 0 ? 0 : (error) < 0 ? (error) : -(error)))

#define log_full(level, ...) (void) log_full_errno(level, 0, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, error, __VA_ARGS__)
#define log_info_errno(error, ...) log_full_errno(LOG_INFO, error, __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, error, __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, error, __VA_ARGS__)

/* Structured entry; the field arguments are only formatted when the level passes. */
#define log_struct_errno(level, error, ...)                                                      \
        do {                                                                                     \
                if (log_get_max_level() >= (level))                                              \
                        (void) log_struct_internal((level), (error), __FILE__, __LINE__, __func__, \
                                                   __VA_ARGS__);                                 \
        } while (0)
#define log_struct(level, ...) log_struct_errno(level, 0, __VA_ARGS__)
