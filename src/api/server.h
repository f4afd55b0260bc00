/* SPDX-License-Identifier: MIT */
#pragma once

/* The HTTP API server: libmicrohttpd without threads of its own, driven by sd-event through
 * its epoll fd and a relative timer from MHD_get_timeout(). It only routes: GET/HEAD on a
 * fixed set of paths, 404 elsewhere, 405 (with Allow) for other methods, 413 for a request
 * that announces a body (refused before it is read), all JSON; the bodies of the routes come
 * from their handlers. Bounded: 128 connections (fewer under a small RLIMIT_NOFILE), 32 per
 * client address, 10 s of inactivity, 32 KiB of request per connection. */

#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "util/buffer.h"

typedef struct Api Api;

typedef struct ApiResponse {
        unsigned status;
        const char *content_type;
        Buffer body;
} ApiResponse;

typedef void (*ApiHandler)(void *userdata, ApiResponse *response);

typedef struct ApiRoute {
        const char *path;
        ApiHandler handler;
} ApiRoute;

/* routes: terminated by an entry with path NULL; must outlive the Api. listen_fd is taken over
 * (closed here, also on failure). */
int api_new(sd_event *e, int listen_fd, const ApiRoute *routes, void *userdata, Api **ret);
Api *api_free(Api *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(Api *, api_free);

/* Hands the server a connected stream socket as if it had accepted it from addr: how the fuzz
 * target (tests/fuzz/fuzz-api.c) feeds it requests over a socketpair. fd is taken over (closed
 * by MHD, also on failure). */
int api_add_connection(Api *a, int fd, const struct sockaddr *addr, socklen_t addrlen);

/* A listening TCP socket on host:port (numeric address or name), for when systemd passed none. */
int api_listen(const char *host, uint16_t port, int *ret_fd);
