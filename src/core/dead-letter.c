/* SPDX-License-Identifier: MIT */
#include "core/dead-letter.h"

static const char *const dead_letter_kind_names[_DEAD_LETTER_KIND_MAX] = {
        [DEAD_LETTER_EMPTY] = "empty",
        [DEAD_LETTER_NOT_JSON] = "not_json",
        [DEAD_LETTER_NOT_OBJECT] = "not_object",
        [DEAD_LETTER_INVALID_UTF8] = "invalid_utf8",
        [DEAD_LETTER_TOO_LARGE] = "too_large",
        [DEAD_LETTER_RETRIES_EXHAUSTED] = "retries_exhausted",
        [DEAD_LETTER_HTTP] = "http",
};

const char *dead_letter_kind_to_string(DeadLetterKind k) {
        return k >= 0 && k < _DEAD_LETTER_KIND_MAX ? dead_letter_kind_names[k] : "unknown";
}
