/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sysexits.h>

#include "amqp/dead-letter-queue.h"
#include "cli/dead-letters.h"
#include "core/dead-letter-report.h"
#include "core/timespan.h"
#include "daemon/config-read.h"

#define LIST_LIMIT_DEFAULT 50
#define BODY_MAX_DEFAULT 65536
/* Progress lines: redrawn in place this often on a terminal, written this often elsewhere, and
 * only for a run that lasts longer than the first interval. */
#define PROGRESS_TTY_USEC (200 * USEC_PER_MSEC)
#define PROGRESS_PIPE_USEC (5 * USEC_PER_SEC)

typedef enum Verb {
        VERB_LIST,
        VERB_SHOW,
        VERB_REPLAY,
        VERB_PURGE,
        _VERB_MAX,
} Verb;

static const char *const verb_names[_VERB_MAX] = {
        [VERB_LIST] = "list",
        [VERB_SHOW] = "show",
        [VERB_REPLAY] = "replay",
        [VERB_PURGE] = "purge",
};

typedef struct Options {
        Verb verb;
        const char *config_path;
        bool config_path_explicit;
        bool json, dry_run, yes, all;
        uint64_t limit;          /* 0: none */
        bool limit_set;
        size_t body_max;
        const char *show_id;     /* show: an event id, or "@N" */
        uint64_t show_position;  /* show @N */
        DeadLetterFilter filter;
} Options;

/* A quorum queue counts every time a message is handed back; a delivery limit (20 by default
 * since RabbitMQ 4.0, where any handing back counted until 4.3) then drops it, and the dead-letter
 * queue has no dead-letter queue of its own. Warn well before that. */
#define DELIVERY_COUNT_WARN 10

static volatile sig_atomic_t interrupted = 0;
static uint64_t max_delivery_count = 0;

static void on_signal(int sig) {
        interrupted = sig;
}

static void options_done(Options *o) {
        free(o->filter.reasons);
        free(o->filter.event_ids);
}

static int fail(const char *format, ...) _printf_(1, 2);
static int fail(const char *format, ...) {
        va_list ap;

        fputs("transmitter dead-letters: ", stderr);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
        return EXIT_FAILURE;
}

static int usage_error(const char *format, ...) _printf_(1, 2);
static int usage_error(const char *format, ...) {
        va_list ap;

        fputs("transmitter dead-letters: ", stderr);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputs("\nTry 'transmitter dead-letters --help'.\n", stderr);
        return EX_USAGE;
}

static void help(void) {
        printf("Usage: transmitter [--config PATH] dead-letters COMMAND [OPTIONS]\n"
               "\n"
               "Inspects, replays and purges the dead-letter queue <RABBITMQ_QUEUE>.dead, with the\n"
               "daemon's settings (%s, TRANSMITTER_* variables, credentials).\n"
               "\n"
               "Commands:\n"
               "  list                  counts by reason and HTTP status, oldest and newest, a page of messages\n"
               "  show EVENT_ID|@POS    one message: its headers and body (by event id, or position in the queue)\n"
               "  replay                republish matching messages to RABBITMQ_EXCHANGE, under publisher\n"
               "                        confirms; each leaves the dead-letter queue only once confirmed\n"
               "  purge                 delete matching messages (needs --yes, and a filter or --all)\n"
               "\n"
               "Filters (list, replay, purge; several of one kind: any of them):\n"
               "      --reason R        x-transmitter-reason, e.g. http_400, not_json, too_large\n"
               "      --event-id ID     the event's CloudEvents id\n"
               "      --batch-id ID     the batch it was refused in\n"
               "      --older-than DUR  dead-lettered at least this long ago: 90m, 2h, 1d12h, 7d\n"
               "\n"
               "Options:\n"
               "  -c, --config PATH     read settings from PATH\n"
               "      --json            list, show: JSON on stdout, for scripts\n"
               "      --limit N         list: messages shown (default %d, 0: all); replay, purge: at most N\n"
               "      --body-max BYTES  show: bytes of a body that is no JSON to print (default %d)\n"
               "      --dry-run         replay, purge: count what would be done, change nothing\n"
               "      --all             purge: every message (instead of a filter)\n"
               "      --yes             purge: really delete\n"
               "  -h, --help            show this help, exit\n"
               "\n"
               "Messages left alone keep their place in the queue. Interrupted (Ctrl-C, kill, broker\n"
               "gone), nothing is lost; at most one message is both replayed and still dead.\n"
               "Exit status: 0 done, 1 failure or nothing matched, 64 bad usage, 78 bad configuration.\n",
               CONFIG_FILE_DEFAULT, LIST_LIMIT_DEFAULT, BODY_MAX_DEFAULT);
}

static int add_value(char ***list, size_t *n, char *value) {
        char **l = realloc(*list, (*n + 1) * sizeof **list);

        if (!l)
                return -ENOMEM;
        *list = l;
        l[(*n)++] = value;
        return 0;
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (isempty(s) || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_args(int argc, char *argv[], Options *o) {
        enum { ARG_JSON = 0x100, ARG_LIMIT, ARG_REASON, ARG_EVENT_ID, ARG_BATCH_ID, ARG_OLDER_THAN, ARG_DRY_RUN,
               ARG_YES, ARG_ALL, ARG_BODY_MAX };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                { "json", no_argument, NULL, ARG_JSON },
                { "limit", required_argument, NULL, ARG_LIMIT },
                { "reason", required_argument, NULL, ARG_REASON },
                { "event-id", required_argument, NULL, ARG_EVENT_ID },
                { "batch-id", required_argument, NULL, ARG_BATCH_ID },
                { "older-than", required_argument, NULL, ARG_OLDER_THAN },
                { "dry-run", no_argument, NULL, ARG_DRY_RUN },
                { "yes", no_argument, NULL, ARG_YES },
                { "all", no_argument, NULL, ARG_ALL },
                { "body-max", required_argument, NULL, ARG_BODY_MAX },
                { NULL, 0, NULL, 0 },
        };
        const char *verb = NULL;
        uint64_t u;
        int c, r;

        /* Options may come before or after the command and its argument. */
        opterr = 0;
        optind = 0; /* GNU getopt: start over (main() parsed its own options), from argv[1] */
        for (;;) {
                c = getopt_long(argc, argv, "-:c:h", options, NULL);
                if (c < 0)
                        break;
                switch (c) {
                case 1: /* a non-option argument, in order */
                        if (!verb)
                                verb = optarg;
                        else if (!o->show_id && streq(verb, "show"))
                                o->show_id = optarg;
                        else
                                return usage_error("unexpected argument '%s'", optarg);
                        break;
                case 'c':
                        o->config_path = optarg;
                        o->config_path_explicit = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_JSON:
                        o->json = true;
                        break;
                case ARG_LIMIT:
                        if (parse_u64(optarg, &o->limit) < 0)
                                return usage_error("--limit %s: not a number (0 or more)", optarg);
                        o->limit_set = true;
                        break;
                case ARG_REASON:
                        /* "--reason a,b" as well as "--reason a --reason b". */
                        for (char *s = optarg, *comma; s; s = comma) {
                                comma = strchr(s, ',');
                                if (comma)
                                        *comma++ = '\0';
                                if (!dead_letter_reason_is_valid(s))
                                        return usage_error("--reason '%s': not a reason (lower-case letters, digits "
                                                           "and _:.-, e.g. http_400, not_json, too_large)", s);
                                r = add_value(&o->filter.reasons, &o->filter.n_reasons, s);
                                if (r < 0)
                                        return r;
                        }
                        break;
                case ARG_EVENT_ID:
                        if (isempty(optarg))
                                return usage_error("--event-id needs an id");
                        r = add_value(&o->filter.event_ids, &o->filter.n_event_ids, optarg);
                        if (r < 0)
                                return r;
                        break;
                case ARG_BATCH_ID:
                        if (isempty(optarg))
                                return usage_error("--batch-id needs an id");
                        o->filter.batch_id = optarg;
                        break;
                case ARG_OLDER_THAN:
                        r = parse_timespan(optarg, &o->filter.older_than);
                        if (r < 0 || o->filter.older_than == 0)
                                return usage_error("--older-than %s: not a duration (e.g. 90m, 2h, 1d12h, 7d)", optarg);
                        break;
                case ARG_DRY_RUN:
                        o->dry_run = true;
                        break;
                case ARG_YES:
                        o->yes = true;
                        break;
                case ARG_ALL:
                        o->all = true;
                        break;
                case ARG_BODY_MAX:
                        if (parse_u64(optarg, &u) < 0 || u > SIZE_MAX)
                                return usage_error("--body-max %s: not a number of bytes", optarg);
                        o->body_max = (size_t) u;
                        break;
                case ':':
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                default:
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        }

        if (!verb)
                return usage_error("which command: list, show, replay or purge?");
        for (o->verb = 0; o->verb < _VERB_MAX; o->verb++)
                if (streq(verb, verb_names[o->verb]))
                        break;
        if (o->verb == _VERB_MAX)
                return usage_error("unknown command '%s' (list, show, replay, purge)", verb);

        if (o->json && o->verb != VERB_LIST && o->verb != VERB_SHOW)
                return usage_error("--json is for list and show");
        if ((o->dry_run) && o->verb != VERB_REPLAY && o->verb != VERB_PURGE)
                return usage_error("--dry-run is for replay and purge");
        if ((o->yes || o->all) && o->verb != VERB_PURGE)
                return usage_error("%s is for purge", o->yes ? "--yes" : "--all");
        if (o->body_max != BODY_MAX_DEFAULT && o->verb != VERB_SHOW)
                return usage_error("--body-max is for show");
        if (o->verb == VERB_SHOW) {
                if (!o->show_id)
                        return usage_error("show needs an event id, or @POSITION");
                if (!dead_letter_filter_is_empty(&o->filter) || o->limit_set)
                        return usage_error("show takes an event id or @POSITION, no filters");
                if (o->show_id[0] == '@' &&
                    (parse_u64(o->show_id + 1, &o->show_position) < 0 || o->show_position == 0))
                        return usage_error("show %s: a position is @1, @2, ...", o->show_id);
        }
        if (o->verb == VERB_PURGE) {
                if (o->all && !dead_letter_filter_is_empty(&o->filter))
                        return usage_error("purge: --all or a filter, not both");
                if (!o->all && dead_letter_filter_is_empty(&o->filter))
                        return usage_error("purge needs a filter (--reason R, ...) or --all");
                if (!o->yes && !o->dry_run)
                        return usage_error("purge deletes for good: add --yes (or --dry-run to count what it "
                                           "would delete)");
        }
        if (o->verb == VERB_LIST && !o->limit_set)
                o->limit = LIST_LIMIT_DEFAULT;
        return 1;
}

typedef struct Progress {
        const char *verb, *done_word;
        bool tty;
        usec_t started, last;
        bool shown;
        uint64_t total;
} Progress;

static void progress_update(Progress *p, uint64_t read, uint64_t done, bool final) {
        usec_t t = now(CLOCK_MONOTONIC), interval = p->tty ? PROGRESS_TTY_USEC : PROGRESS_PIPE_USEC;
        char line[256];

        if (!final && t - p->last < interval)
                return;
        if (final && !p->shown)
                return; /* a short run needs no progress */
        if (!final && !p->shown && t - p->started < interval)
                return;
        p->last = t;
        p->shown = true;
        dead_letter_progress(line, sizeof line, p->verb, p->done_word, read, p->total, done, t - p->started);
        if (p->tty)
                fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
        else
                fprintf(stderr, "%s\n", line);
        fflush(stderr);
}

static void progress_init(Progress *p, const char *verb, const char *done_word, uint64_t total) {
        *p = (Progress) {
                .verb = verb,
                .done_word = done_word,
                .tty = isatty(STDERR_FILENO),
                .started = now(CLOCK_MONOTONIC),
                .total = total,
        };
        p->last = p->started;
}

static int print_buffer(const Buffer *b) {
        if (b->size > 0 && fwrite(b->data, 1, b->size, stdout) != b->size)
                return fail("writing to stdout failed: %s", strerror(errno));
        if (fflush(stdout) != 0)
                return fail("writing to stdout failed: %s", strerror(errno));
        return 0;
}

static void entry_of(const DeadLetterMessage *m, uint64_t position, DeadLetterEntry *ret) {
        dead_letter_entry_init(ret, position, &m->headers, m->message.body.bytes, m->message.body.len,
                               m->routing_key.bytes, m->routing_key.len);
        max_delivery_count = MAX(max_delivery_count, ret->delivery_count);
}

/* "http_400 20, not_json 7": what there is, when a filter matched nothing. */
static void reasons_line(const DeadLetterSummary *all, char *buf, size_t size) {
        size_t used = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < all->n_reasons && used < size; i++)
                used += (size_t) snprintf(buf + used, size - used, "%s%s %" PRIu64, i > 0 ? ", " : "",
                                          all->reasons[i].key, all->reasons[i].count);
}

/* Each run_*() takes q over and frees it as soon as it is done with the queue. */
static int run_list(const Options *o, DeadLetterQueue *q, const char *queue, uint64_t count) {
        _cleanup_free_ DeadLetterEntry *page = NULL;
        DeadLetterSummary summary = { 0 };
        size_t n_page = 0, allocated = 0;
        Buffer out = { 0 };
        Progress p;
        char error[512];
        int r = 0;

        progress_init(&p, "list", "matched", count);
        for (uint64_t i = 0; i < count && !interrupted; i++) {
                _cleanup_(dead_letter_message_freep) DeadLetterMessage *m = NULL;
                DeadLetterEntry e;
                bool match;

                r = dead_letter_queue_get(q, &m, error, sizeof error);
                if (r < 0) {
                        r = fail("reading %s: %s", queue, error);
                        goto finish;
                }
                if (r == 0)
                        break;
                entry_of(m, i + 1, &e);
                match = dead_letter_filter_match(&o->filter, &e, now(CLOCK_REALTIME));
                r = dead_letter_summary_add(&summary, &e, match);
                if (r < 0)
                        goto oom;
                if (match && (o->limit == 0 || n_page < o->limit)) {
                        if (n_page == allocated) {
                                DeadLetterEntry *l = realloc(page, (allocated = MAX(allocated * 2, (size_t) 64)) *
                                                                           sizeof *page);
                                if (!l)
                                        goto oom;
                                page = l;
                        }
                        page[n_page++] = e;
                }
                progress_update(&p, summary.in_queue, summary.total, false);
        }
        progress_update(&p, summary.in_queue, summary.total, true);
        if (interrupted) {
                r = fail("interrupted after reading %" PRIu64 " of %" PRIu64 " messages; nothing was changed",
                         summary.in_queue, count);
                goto finish;
        }
        /* Listing changes nothing: the messages go back, in their order, before the output. */
        dead_letter_queue_free(q);
        {
                DeadLetterListing l = {
                        .queue = queue,
                        .summary = &summary,
                        .page = page,
                        .n_page = n_page,
                        .filtered = !dead_letter_filter_is_empty(&o->filter),
                        .now = now(CLOCK_REALTIME),
                };
                r = o->json ? dead_letter_list_json(&l, &out) : dead_letter_list_text(&l, &out);
                if (r < 0)
                        goto oom;
                r = print_buffer(&out);
        }
        goto finish_closed;

oom:
        r = fail("out of memory");
finish:
        dead_letter_queue_free(q);
finish_closed:
        buffer_done(&out);
        dead_letter_summary_done(&summary);
        return r;
}

static int run_show(const Options *o, DeadLetterQueue *q, const char *queue, uint64_t count) {
        _cleanup_(dead_letter_message_freep) DeadLetterMessage *found = NULL;
        DeadLetterField *props = NULL, *headers = NULL;
        size_t n_props = 0, n_headers = 0;
        DeadLetterEntry e;
        Buffer out = { 0 };
        char error[512];
        uint64_t i;
        int r;

        for (i = 0; i < count && !interrupted && !found; i++) {
                _cleanup_(dead_letter_message_freep) DeadLetterMessage *m = NULL;

                r = dead_letter_queue_get(q, &m, error, sizeof error);
                if (r < 0) {
                        dead_letter_queue_free(q);
                        return fail("reading %s: %s", queue, error);
                }
                if (r == 0)
                        break;
                entry_of(m, i + 1, &e);
                if (o->show_position > 0 ? o->show_position == i + 1 : streq(e.event_id, o->show_id))
                        found = TAKE_PTR(m);
        }
        /* Showing changes nothing: the messages go back, in their order, before the output. */
        dead_letter_queue_free(q);
        if (interrupted)
                return fail("interrupted; nothing was changed");
        if (!found) {
                if (o->show_position > 0)
                        return fail("%s holds %" PRIu64 " messages, no %s", queue, i, o->show_id);
                return fail("no dead letter with event id '%s' among the %" PRIu64 " messages of %s", o->show_id, i,
                            queue);
        }

        r = dead_letter_message_fields(found, &props, &n_props, &headers, &n_headers);
        if (r >= 0) {
                DeadLetterMessageView v = {
                        .entry = &e,
                        .properties = props,
                        .n_properties = n_props,
                        .headers = headers,
                        .n_headers = n_headers,
                        .body = found->message.body.bytes,
                        .body_size = found->message.body.len,
                        .body_max = o->body_max,
                        .now = now(CLOCK_REALTIME),
                };
                r = o->json ? dead_letter_show_json(&v, &out) : dead_letter_show_text(&v, &out);
        }
        dead_letter_fields_free(props, n_props);
        dead_letter_fields_free(headers, n_headers);
        if (r < 0) {
                buffer_done(&out);
                return fail("out of memory");
        }
        r = print_buffer(&out);
        buffer_done(&out);
        return r;
}

typedef struct Outcome {
        uint64_t read, matched, done, kept_unroutable, kept_refused;
        char last_refusal[512];
        /* The message acked last, until the broker proved it handled the ack: on a lost connection
         * it may be both republished and still dead. */
        bool unproven;
        DeadLetterEntry unproven_entry;
} Outcome;

static void describe(const DeadLetterEntry *e, char *buf, size_t size) {
        if (e->event_id[0])
                snprintf(buf, size, "event id %s", e->event_id);
        else
                snprintf(buf, size, "position %" PRIu64 ", no event id", e->position);
}

/* replay and purge: read every message, act on those that match, leave the others unacked. */
static int run_act(const Options *o, DeadLetterQueue *q, const Config *config, const char *queue, uint64_t count) {
        bool replay = o->verb == VERB_REPLAY;
        const char *done_word = o->dry_run ? "matched" : replay ? "replayed" : "deleted";
        DeadLetterSummary all = { 0 };
        Outcome out = { 0 };
        Progress p;
        char error[512], what[300 + DEAD_LETTER_EVENT_ID_MAX];
        int r = 0;

        progress_init(&p, verb_names[o->verb], done_word, count);
        while (out.read < count && !interrupted && (o->limit == 0 || out.matched < o->limit)) {
                _cleanup_(dead_letter_message_freep) DeadLetterMessage *m = NULL;
                DeadLetterEntry e;

                r = dead_letter_queue_get(q, &m, error, sizeof error);
                if (r < 0)
                        goto lost;
                if (r == 0)
                        break;
                /* basic.get is answered after the broker handled everything sent before it. */
                out.unproven = false;
                out.read++;
                entry_of(m, out.read, &e);
                if (!dead_letter_filter_match(&o->filter, &e, now(CLOCK_REALTIME))) {
                        if (dead_letter_summary_add(&all, &e, true) < 0) {
                                r = fail("out of memory");
                                goto done;
                        }
                        goto next;
                }
                out.matched++;
                if (o->dry_run) {
                        out.done++;
                        goto next;
                }
                if (replay) {
                        /* From here until the next basic.get is answered, a lost connection leaves
                         * this one's fate open: republished or not, acked or not. */
                        out.unproven = true;
                        out.unproven_entry = e;
                        r = dead_letter_queue_republish(q, m, config->rabbitmq_exchange, e.replay_count + 1, error,
                                                        sizeof error);
                        if (r == -EHOSTUNREACH || r == -EREMOTEIO) {
                                /* Not republished: it stays dead, and the others may still go. */
                                out.unproven = false;
                                if (r == -EHOSTUNREACH)
                                        out.kept_unroutable++;
                                else
                                        out.kept_refused++;
                                snprintf(out.last_refusal, sizeof out.last_refusal, "%s", error);
                                goto next;
                        }
                        if (r < 0)
                                goto lost;
                }
                r = dead_letter_queue_ack(q, m, error, sizeof error);
                if (r < 0)
                        goto lost;
                out.done++;
        next:
                progress_update(&p, out.read, out.done, false);
        }
        progress_update(&p, out.read, out.done, true);

        /* Closing the connection returns the messages left alone, in their order. */
        dead_letter_queue_free(q);
        q = NULL;
        out.unproven = false;

        if (out.matched == 0)
                ; /* said below */
        else if (o->dry_run)
                printf("Would %s %" PRIu64 " of the %" PRIu64 " dead letters read from %s (--dry-run: nothing "
                       "changed).\n", replay ? "replay" : "delete", out.done, out.read, queue);
        else if (replay)
                printf("Replayed %" PRIu64 " dead letters to exchange %s; %" PRIu64 " of the %" PRIu64
                       " read stay in %s.\n", out.done, config->rabbitmq_exchange, out.read - out.done, out.read,
                       queue);
        else
                printf("Deleted %" PRIu64 " dead letters from %s; %" PRIu64 " of the %" PRIu64 " read stay.\n",
                       out.done, queue, out.read - out.done, out.read);
        fflush(stdout);

        if (interrupted)
                r = fail("interrupted by signal %d: stopped after %" PRIu64 " %s; the rest stay in %s", (int) interrupted,
                         out.done, done_word, queue);
        else if (out.kept_unroutable + out.kept_refused > 0)
                r = fail("%" PRIu64 " matching dead letters were not replayed and stay in %s: %s",
                         out.kept_unroutable + out.kept_refused, queue, out.last_refusal);
        else if (out.matched == 0) {
                char have[512];

                reasons_line(&all, have, sizeof have);
                r = fail("no dead letter matches%s (%" PRIu64 " read%s%s)", o->all ? "" : " the filter", out.read,
                         out.read > 0 ? ": " : "", have);
        } else
                r = 0;
        goto done;

lost:
        r = fail("%s: %s", queue, error);
        fprintf(stderr, "transmitter dead-letters: stopped after %" PRIu64 " %s. Nothing is lost: what was not "
                "acknowledged goes back to %s.\n", out.done, done_word, queue);
        if (replay && out.unproven) {
                describe(&out.unproven_entry, what, sizeof what);
                fprintf(stderr, "transmitter dead-letters: the one being replayed (%s) may have been republished "
                        "and still be in %s: replaying it again may send it twice.\n", what, queue);
        }
done:
        dead_letter_queue_free(q);
        dead_letter_summary_done(&all);
        return r;
}

int dead_letters_main(int argc, char *argv[], const char *config_path, bool config_path_explicit) {
        _cleanup_(config_freep) Config *config = NULL;
        _cleanup_free_ char *queue = NULL;
        Options o = {
                .config_path = config_path,
                .config_path_explicit = config_path_explicit,
                .body_max = BODY_MAX_DEFAULT,
        };
        struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESETHAND };
        char error[CONFIG_ERROR_MAX];
        DeadLetterQueue *q = NULL;
        uint64_t count = 0;
        int r;

        r = parse_args(argc, argv, &o);
        if (r <= 0 || r == EX_USAGE) {
                options_done(&o);
                return r == -ENOMEM ? fail("out of memory") : r == 0 ? EXIT_SUCCESS : EX_USAGE;
        }

        r = config_read(o.config_path, o.config_path_explicit, &config, error);
        if (r < 0) {
                options_done(&o);
                if (r == -ENOMEM)
                        return fail("out of memory");
                fprintf(stderr, "transmitter dead-letters: invalid configuration: %s\n", error);
                return EX_CONFIG;
        }
        if (asprintf(&queue, "%s.dead", config->rabbitmq_queue) < 0) {
                options_done(&o);
                return fail("out of memory");
        }

        /* The first Ctrl-C finishes the message at hand and stops cleanly; a second one kills,
         * which loses nothing either. */
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGINT, &sa, NULL);
        (void) sigaction(SIGTERM, &sa, NULL);
        (void) sigaction(SIGHUP, &sa, NULL);
        /* A closed pipe (| head) must not kill the tool before it closes the connection. */
        (void) signal(SIGPIPE, SIG_IGN);

        r = dead_letter_queue_open(&(DeadLetterQueueSettings) {
                                           .url = config->rabbitmq_url,
                                           .ca_file = config->rabbitmq_ca_file,
                                           .queue = queue,
                                           .heartbeat_s = config->rabbitmq_heartbeat_s,
                                           .connect_timeout_s = config->connect_timeout_s,
                                           .instance_id = config->instance_id,
                                   },
                                   &q, &count, error, sizeof error);
        if (r < 0) {
                options_done(&o);
                return r == -ENOMEM ? fail("out of memory") : fail("%s", error);
        }

        switch (o.verb) {
        case VERB_LIST:
                r = run_list(&o, q, queue, count);
                break;
        case VERB_SHOW:
                r = run_show(&o, q, queue, count);
                break;
        default:
                r = run_act(&o, q, config, queue, count);
                break;
        }
        options_done(&o);
        if (max_delivery_count >= DELIVERY_COUNT_WARN)
                fprintf(stderr, "transmitter dead-letters: warning: %s has handed a message back %" PRIu64 " times "
                        "(x-delivery-count); each list, show and replay counts. A quorum queue with a delivery "
                        "limit (RabbitMQ 4.0 sets 20) drops a message that reaches it: give %s the policy "
                        "delivery-limit -1.\n", queue, max_delivery_count, queue);
        return r;
}
