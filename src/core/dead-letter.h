/* SPDX-License-Identifier: MIT */
#pragma once

/* Why a message is dead-lettered: the x-transmitter-reason it carries (architecture §5). */

#include "util/util.h"

typedef enum DeadLetterKind {
        DEAD_LETTER_EMPTY,
        DEAD_LETTER_NOT_JSON,
        DEAD_LETTER_NOT_OBJECT,
        DEAD_LETTER_INVALID_UTF8,
        DEAD_LETTER_TOO_LARGE,
        DEAD_LETTER_RETRIES_EXHAUSTED, /* failed on its own, and the broker's delivery limit is near */
        DEAD_LETTER_HTTP,              /* refused by the destination with a permanent status */
        _DEAD_LETTER_KIND_MAX,
} DeadLetterKind;

const char *dead_letter_kind_to_string(DeadLetterKind k);
