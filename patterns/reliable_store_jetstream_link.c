/*  =========================================================================
    reliable_store_jetstream_link - which server a JetStream store's
    connection is on, for the log: "connected (URL)" once the store is
    open, "connection lost (URL)" naming the server it was on, "connection
    back (URL)" naming the one it is on now, "connection closed" should
    libnats give it up, and nothing about the close the store itself asks
    for.

    libnats runs the lost and back callbacks later, on its own thread: by
    then natsConnection_GetConnectedUrl gives the server the connection
    moved to, or none while it is still moving. So the link keeps the
    server as it was when the store opened and at each reconnect. The link
    is the callbacks' closure, owned by the store and by libnats together:
    libnats may run a callback after the store is freed, and its closed
    callback, the last it runs for a connection, lets go of its share.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable_store_jetstream.h"
#include "zq_internal.h"

struct _zqi_js_link_t {
    pthread_mutex_t lock;     //  guards everything below
    int shares;               //  the store's and libnats' (freed at 0)
    bool closing;             //  the store closes the connection: its end is not a loss
    char url[ZQI_JS_URL_MAX]; //  "" until the store is open
};

zqi_js_link_t *
zqi_js_link_new (void)
{
    zqi_js_link_t *link = (zqi_js_link_t *)calloc (1, sizeof *link);
    if (!link)
        return NULL;
    pthread_mutex_init (&link->lock, NULL);
    link->shares = 2;
    return link;
}

//  Lets go of one share of the link; the last frees it.
static void
s_release (zqi_js_link_t *link)
{
    pthread_mutex_lock (&link->lock);
    int shares = --link->shares;
    pthread_mutex_unlock (&link->lock);
    if (shares == 0) {
        pthread_mutex_destroy (&link->lock);
        free (link);
    }
}

void
zqi_js_link_release (zqi_js_link_t **link_p, bool connected)
{
    if (!link_p || !*link_p)
        return;
    if (!connected)
        s_release (*link_p); //  libnats never had the connection: its share
    s_release (*link_p);
    *link_p = NULL;
}

//  Writes the server libnats says conn is on into url; returns false
//  (url "") when it is on none.
static bool
s_current_url (natsConnection *conn, char *url)
{
    *url = '\0';
    return natsConnection_GetConnectedUrl (conn, url, ZQI_JS_URL_MAX) == NATS_OK && *url;
}

//  Records url as the server the link names.
static void
s_write (zqi_js_link_t *link, const char *url)
{
    pthread_mutex_lock (&link->lock);
    snprintf (link->url, sizeof link->url, "%s", url);
    pthread_mutex_unlock (&link->lock);
}

void
zqi_js_link_opened (zqi_js_link_t *link, natsConnection *conn)
{
    char url[ZQI_JS_URL_MAX];
    if (!s_current_url (conn, url))
        snprintf (url, sizeof url, "no server");
    s_write (link, url);
    zqi_log (ZQ_LOG_NOTICE, "reliable: JetStream connected (%s)", url);
}

void
zqi_js_link_closing (zqi_js_link_t *link)
{
    pthread_mutex_lock (&link->lock);
    link->closing = true;
    pthread_mutex_unlock (&link->lock);
}

//  Copies the server the link names into url; returns whether the store
//  is closing the connection.
static bool
s_read (zqi_js_link_t *link, char *url)
{
    pthread_mutex_lock (&link->lock);
    bool closing = link->closing;
    snprintf (url, ZQI_JS_URL_MAX, "%s", link->url);
    pthread_mutex_unlock (&link->lock);
    return closing;
}

void
zqi_js_link_lost (natsConnection *conn, void *closure)
{
    zqi_js_link_t *link = (zqi_js_link_t *)closure;
    char url[ZQI_JS_URL_MAX];
    bool closing = s_read (link, url);
    //  (A loss before the store was open: the server libnats gives.)
    if (!*url && !s_current_url (conn, url))
        snprintf (url, sizeof url, "no server");
    if (!closing)
        zqi_log (ZQ_LOG_WARNING, "reliable: JetStream connection lost (%s)", url);
}

void
zqi_js_link_back (natsConnection *conn, void *closure)
{
    zqi_js_link_t *link = (zqi_js_link_t *)closure;
    char url[ZQI_JS_URL_MAX];
    if (!s_current_url (conn, url)) {
        //  Gone again before this callback ran: which server it was on
        //  for that moment is not known, and the next loss names the last
        //  one that is.
        zqi_log (ZQ_LOG_WARNING, "reliable: JetStream connection back, and lost again");
        return;
    }
    s_write (link, url);
    zqi_log (ZQ_LOG_WARNING, "reliable: JetStream connection back (%s)", url);
}

void
zqi_js_link_closed (natsConnection *conn, void *closure)
{
    (void)conn;
    zqi_js_link_t *link = (zqi_js_link_t *)closure;
    char url[ZQI_JS_URL_MAX];
    if (!s_read (link, url))
        zqi_log (ZQ_LOG_ERROR,
                 "reliable: JetStream connection closed by libnats (last on %s): it will not "
                 "reconnect",
                 *url ? url : "no server");
    s_release (link);
}
