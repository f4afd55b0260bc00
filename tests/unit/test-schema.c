/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>

#include "core/schema.h"

static const char *expected[] = { "001_create_batches.sql", "002_add_instance_and_indexes.sql" };

Test(schema, missing) {
        const char *missing = "x";

        cr_assert_eq(schema_compare(expected, 2, NULL, 0, &missing), SCHEMA_MISSING, "no table");
        cr_assert_null(missing);
        cr_assert_eq(schema_compare(expected, 2, (const char *[]) { NULL }, 0, NULL), SCHEMA_MISSING, "an empty table");
}

Test(schema, older) {
        const char *applied[] = { "001_create_batches.sql" }, *gap[] = { "002_add_instance_and_indexes.sql" };
        const char *missing = NULL;

        cr_assert_eq(schema_compare(expected, 2, applied, 1, &missing), SCHEMA_OLDER);
        cr_assert_str_eq(missing, "002_add_instance_and_indexes.sql");
        cr_assert_eq(schema_compare(expected, 2, gap, 1, &missing), SCHEMA_OLDER, "a gap counts too");
        cr_assert_str_eq(missing, "001_create_batches.sql", "the first one missing");
}

Test(schema, current) {
        const char *applied[] = { "002_add_instance_and_indexes.sql", "001_create_batches.sql" };
        const char *newer[] = { "001_create_batches.sql", "003_something_later.sql", "002_add_instance_and_indexes.sql" };
        const char *missing = "x";

        cr_assert_eq(schema_compare(expected, 2, applied, 2, &missing), SCHEMA_CURRENT, "in any order");
        cr_assert_null(missing);
        cr_assert_eq(schema_compare(expected, 2, newer, 3, NULL), SCHEMA_CURRENT,
                     "a newer transmitter's migrations on top are fine");
        cr_assert_eq(schema_compare(expected, 1, applied, 2, NULL), SCHEMA_CURRENT);
}

Test(schema, describe) {
        char buf[256];

        schema_describe(SCHEMA_MISSING, NULL, buf, sizeof buf);
        cr_assert_str_eq(buf, "schema missing, run transmitter --migrate");
        schema_describe(SCHEMA_OLDER, "002_add_instance_and_indexes.sql", buf, sizeof buf);
        cr_assert_str_eq(buf, "schema older than this transmitter (002_add_instance_and_indexes.sql not applied), run "
                              "transmitter --migrate");
        schema_describe(SCHEMA_CURRENT, NULL, buf, sizeof buf);
        cr_assert_str_eq(buf, "");
        cr_assert_str_eq(schema_state_to_string(SCHEMA_OLDER), "older");
        cr_assert_str_eq(schema_state_to_string(_SCHEMA_STATE_MAX), "unknown");
}
