/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <stdio.h>
#include <sysexits.h>

#include "cli/dead-letters.h"
#include "daemon/config-read.h"
#include "daemon/daemon.h"
#include "http/sender.h"
#include "os/log.h"
#include "pg/migrate.h"
#include "version.h"

static void help(void) {
        printf("Usage: transmitter [OPTIONS]\n"
               "       transmitter [--config PATH] dead-letters list|show|replay|purge [OPTIONS]\n"
               "\n"
               "Delivers approved discovery events from RabbitMQ to the discovery API over HTTPS,\n"
               "in gzip batches, tracking every batch in PostgreSQL. Settings come from\n"
               "%s and TRANSMITTER_* environment variables; see transmitter.conf(5).\n"
               "\n"
               "  -c, --config PATH   read settings from PATH instead of %s\n"
               "      --check-config  validate the settings, print the effective ones (secrets hidden), exit\n"
               "      --migrate       apply the database migrations, exit\n"
               "  -h, --help          show this help, exit\n"
               "      --version       show the version, exit\n"
               "\n"
               "Commands:\n"
               "  dead-letters        inspect, replay and purge the dead-letter queue\n"
               "                      (transmitter dead-letters --help)\n"
               "\n"
               "Signals: SIGHUP reloads the file and credentials, SIGTERM/SIGINT stop after sending\n"
               "what is in flight. Exit status: 0 success, 1 failure, 64 bad usage, 78 bad\n"
               "configuration.\n",
               CONFIG_FILE_DEFAULT, CONFIG_FILE_DEFAULT);
}

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_CHECK_CONFIG, ARG_MIGRATE };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "migrate", no_argument, NULL, ARG_MIGRATE },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { NULL, 0, NULL, 0 },
        };
        const char *config_path = CONFIG_FILE_DEFAULT;
        bool config_path_explicit = false, check_config = false, migrate = false;
        char error[CONFIG_ERROR_MAX];
        Config *config = NULL;
        int c, r;

        log_setup();

        /* "+": the options end at the first argument, which may be a command with options of its own. */
        while ((c = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        config_path = optarg;
                        config_path_explicit = true;
                        break;
                case ARG_CHECK_CONFIG:
                        check_config = true;
                        break;
                case ARG_MIGRATE:
                        migrate = true;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("transmitter %s\n", TRANSMITTER_VERSION);
                        return EXIT_SUCCESS;
                default:
                        fprintf(stderr, "Try 'transmitter --help'.\n");
                        return EX_USAGE;
                }
        if (optind < argc && streq(argv[optind], "dead-letters")) {
                if (check_config || migrate) {
                        fprintf(stderr, "dead-letters does not go with --check-config or --migrate. Try 'transmitter --help'.\n");
                        return EX_USAGE;
                }
                return dead_letters_main(argc - optind, argv + optind, config_path, config_path_explicit);
        }
        if (optind < argc) {
                fprintf(stderr, "transmitter takes no arguments: '%s'. Try 'transmitter --help'.\n", argv[optind]);
                return EX_USAGE;
        }

        r = config_read(config_path, config_path_explicit, &config, error);
        if (r < 0) {
                if (check_config)
                        fprintf(stderr, "%s\n", error);
                else
                        log_error("Invalid configuration: %s", error);
                return r == -ENOMEM ? EXIT_FAILURE : EX_CONFIG;
        }
        log_set_max_level(config->log_level);

        if (check_config) {
                _cleanup_free_ char *text = config_format(config);
                config_free(config);
                if (!text)
                        return EXIT_FAILURE;
                fputs(text, stdout);
                return EXIT_SUCCESS;
        }

        if (migrate) {
                char why[MIGRATE_ERROR_MAX];

                r = migrate_database(config->database_url, (usec_t) config->connect_timeout_s * USEC_PER_SEC, why);
                config_free(config);
                if (r < 0) {
                        log_error_errno(r, "%s", why);
                        return EXIT_FAILURE;
                }
                return EXIT_SUCCESS;
        }

        r = sender_global_init();
        if (r < 0) {
                config_free(config);
                log_error_errno(r, "Failed to initialise libcurl: %s", STRERROR(r));
                return EXIT_FAILURE;
        }

        r = daemon_run(config, config_path, config_path_explicit);
        return r < 0 ? EXIT_FAILURE : r;
}
