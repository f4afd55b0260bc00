/* SPDX-License-Identifier: MIT */
#pragma once

/* One pass over a message body: strict RFC 8259 JSON with UTF-8 validation, top
 * level an object, and where the object has a top-level string member "id", the
 * raw (still escaped) bytes of that string. Nothing is allocated, nothing copied. */

#include "util/util.h"

typedef enum JsonCheck {
        JSON_CHECK_OK,
        JSON_CHECK_EMPTY,        /* zero bytes or only whitespace */
        JSON_CHECK_INVALID_UTF8, /* a byte sequence that is not UTF-8 (overlongs, surrogates included) */
        JSON_CHECK_NOT_JSON,     /* a syntax error, trailing garbage, or nesting deeper than JSON_CHECK_MAX_DEPTH */
        JSON_CHECK_NOT_OBJECT,   /* valid JSON whose top level is not an object */
        _JSON_CHECK_MAX,
} JsonCheck;

#define JSON_CHECK_MAX_DEPTH 128

typedef struct JsonEventId {
        const char *id; /* points into the body; NULL when there is no top-level string "id" */
        size_t id_len;
} JsonEventId;

JsonCheck json_check_event(const void *body, size_t size, JsonEventId *ret_id);

/* The dead-letter reason for a failed check: "empty", "invalid_utf8", "not_json", "not_object". */
const char *json_check_to_reason(JsonCheck c);
