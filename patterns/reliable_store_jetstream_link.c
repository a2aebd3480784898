/*  =========================================================================
    reliable_store_jetstream_link - which server a JetStream store's
    connection is on, for the log: "connected (URL)" once the store is
    open, "connection lost (URL)" naming the server it was on, "connection
    back (URL)" naming the one it is on now, "connection closed" should
    libnats give it up, and nothing about the close the store itself asks
    for.

    libnats runs the lost and back callbacks later, on its own thread: by
    then natsConnection_GetConnectedUrl gives the server the connection
    moved to, or none while it is still moving. So the server is kept here
    as it was when the store opened and at each reconnect. It is kept in a
    table of this file, keyed by the connection, and not in the store:
    libnats may run a callback after the store is freed (the connection
    itself stays valid for it: libnats holds it until its callbacks are
    done). The closed callback, the last libnats runs for a connection,
    removes its entry. A connection with no entry (the table full) is
    logged with the server libnats gives.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_store_jetstream.h"
#include "zq_internal.h"

typedef struct {
    const natsConnection *conn; //  NULL: a free entry
    bool closing;               //  the store closes it: its end is not a loss
    char url[ZQI_JS_URL_MAX];
} s_link_t;

static s_link_t s_links[ZQI_JS_LINKS_MAX];
static pthread_mutex_t s_links_lock = PTHREAD_MUTEX_INITIALIZER;

//  The entry of conn, or NULL. Call with the lock held.
static s_link_t *
s_find (const natsConnection *conn)
{
    for (size_t index = 0; index < ZQI_JS_LINKS_MAX; index++)
        if (s_links[index].conn == conn)
            return &s_links[index];
    return NULL;
}

//  Writes the server libnats says conn is on into url, or "no server".
static void
s_current_url (natsConnection *conn, char *url)
{
    if (natsConnection_GetConnectedUrl (conn, url, ZQI_JS_URL_MAX) != NATS_OK || !*url)
        snprintf (url, ZQI_JS_URL_MAX, "no server");
}

//  Records that conn is on the server libnats gives now, in a new entry
//  when it has none (reset: a connection freed earlier may have had the
//  same address), and writes that server into url.
static void
s_record (natsConnection *conn, char *url, bool opened)
{
    s_current_url (conn, url);
    pthread_mutex_lock (&s_links_lock);
    s_link_t *link = s_find (conn);
    if (!link && opened)
        link = s_find (NULL);
    if (link) {
        link->conn = conn;
        if (opened)
            link->closing = false;
        snprintf (link->url, sizeof link->url, "%s", url);
    }
    pthread_mutex_unlock (&s_links_lock);
}

void
zqi_js_link_opened (natsConnection *conn)
{
    char url[ZQI_JS_URL_MAX];
    s_record (conn, url, true);
    zqi_log (ZQ_LOG_NOTICE, "reliable: JetStream connected (%s)", url);
}

void
zqi_js_link_closing (natsConnection *conn)
{
    pthread_mutex_lock (&s_links_lock);
    s_link_t *link = s_find (conn);
    if (link)
        link->closing = true;
    pthread_mutex_unlock (&s_links_lock);
}

void
zqi_js_link_lost (natsConnection *conn, void *closure)
{
    (void)closure;
    char url[ZQI_JS_URL_MAX] = "";
    bool closing = false;
    pthread_mutex_lock (&s_links_lock);
    s_link_t *link = s_find (conn);
    if (link) {
        closing = link->closing;
        snprintf (url, sizeof url, "%s", link->url);
    }
    pthread_mutex_unlock (&s_links_lock);
    if (!link)
        s_current_url (conn, url);
    if (!closing)
        zqi_log (ZQ_LOG_WARNING, "reliable: JetStream connection lost (%s)", url);
}

void
zqi_js_link_back (natsConnection *conn, void *closure)
{
    (void)closure;
    char url[ZQI_JS_URL_MAX];
    s_record (conn, url, false);
    zqi_log (ZQ_LOG_WARNING, "reliable: JetStream connection back (%s)", url);
}

void
zqi_js_link_closed (natsConnection *conn, void *closure)
{
    (void)closure;
    bool closing = false;
    char url[ZQI_JS_URL_MAX] = "";
    pthread_mutex_lock (&s_links_lock);
    s_link_t *link = s_find (conn);
    if (link) {
        closing = link->closing;
        snprintf (url, sizeof url, "%s", link->url);
        memset (link, 0, sizeof *link);
    }
    pthread_mutex_unlock (&s_links_lock);
    if (link && !closing)
        zqi_log (ZQ_LOG_ERROR,
                 "reliable: JetStream connection closed by libnats (last on %s): it will not "
                 "reconnect",
                 url);
}
