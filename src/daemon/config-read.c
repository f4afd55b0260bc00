/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <stdio.h>

#include "daemon/config-read.h"
#include "os/log.h"

#define CONFIG_FILE_SIZE_MAX (1024u * 1024)

extern char **environ;

int config_read(const char *path, bool path_explicit, Config **ret, char error[static CONFIG_ERROR_MAX]) {
        _cleanup_free_ char *text = NULL;
        _cleanup_free_ Config *c = NULL;
        char hostname[HOST_NAME_MAX + 1] = "";
        char unknown[256], obsolete[256];
        int r;

        r = read_full_file(path, CONFIG_FILE_SIZE_MAX, &text, NULL);
        if (r < 0 && (r != -ENOENT || path_explicit)) {
                snprintf(error, CONFIG_ERROR_MAX, "%s: cannot be read: %s", path, STRERROR(r));
                return -EINVAL;
        }

        if (gethostname(hostname, sizeof hostname - 1) < 0)
                hostname[0] = '\0';

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        r = config_load(&(ConfigSources) {
                                .file_text = text,
                                .file_name = path,
                                .environ = environ,
                                .credentials_dir = getenv("CREDENTIALS_DIRECTORY"),
                                .hostname = hostname[0] ? hostname : NULL,
                        },
                        c, error);
        if (r < 0)
                return r;

        if (config_unknown_env(environ, unknown, sizeof unknown) > 0)
                log_warning("Ignoring unknown environment variable(s): %s", unknown);
        if (config_obsolete_names(c, obsolete, sizeof obsolete) > 0)
                log_warning("Ignoring obsolete setting(s): %s", obsolete);

        *ret = TAKE_PTR(c);
        return 0;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        config_done(c);
        return mfree(c);
}
