/*  =========================================================================
    zq_device_access - who may do what on the device: the config's access
    section read into identities (each with CURVE public keys and rights on
    queue-name patterns), the one question every kind asks ("may identity
    X do OP on queue NAME"), and zq's ZAP handler, which admits a CURVE key
    only if an identity holds it and the socket's ZAP domain allows it.

    Pattern syntax (doc/DEVICE.md, "Access"): a right is a comma-separated
    list of patterns; a pattern is a queue name, matched exactly, or text
    ending in '*', matching every name that starts with the text before it
    ("*" alone matches every name). Nothing else is special.

    Everything here runs on the device's thread: no locks.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_device_internal.h"
#include <ctype.h>
#include <dirent.h>
#include <sys/stat.h>

//  libzmq's ZAP endpoint (RFC 27).
#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define S_KEY_SIZE     32
#define S_KEY_TEXT     40
//  One refusal line per identity per this many ms.
#define S_LOG_IVL_MS 10000
//  Bounds of the section: identities, and keys in all.
#define S_IDENTITIES_MAX 1024
#define S_KEYS_MAX       65536
#define S_PATTERNS_MAX   4096 //  characters of one right

static const char *s_op_names[] = {"put", "consume", "admin"};

typedef struct {
    char *name;
    char *rights[ZQI_ACCESS_OPS]; //  comma-separated patterns; "" none
    uint64_t refused;
    //  One log limiter per right, so that refusals of one kind (a stray
    //  admin handshake, say) do not hide those of another.
    zqi_log_limit_t refusal_log[ZQI_ACCESS_OPS];
} s_identity_t;

struct _zqi_access_t {
    zlistx_t *identities;    //  of s_identity_t *
    zhashx_t *keys;          //  Z85 public key -> s_identity_t * (not owned)
    s_identity_t *anonymous; //  the identity "anonymous", or NULL
    bool identified;         //  CURVE on: a client without a User-Id gets nothing
    uint64_t strangers;      //  handshakes of keys no identity holds
    zqi_log_limit_t stranger_log;
    const zqi_clock_t *clock; //  the log limits' clock (NULL: the system's)
};

static void
s_identity_destroy (void **item)
{
    s_identity_t *self = (s_identity_t *)*item;
    if (self) {
        free (self->name);
        for (int op = 0; op < ZQI_ACCESS_OPS; op++)
            free (self->rights[op]);
        free (self);
        *item = NULL;
    }
}

const char *
zqi_access_op_name (zqi_access_op_t op)
{
    return op >= 0 && op < ZQI_ACCESS_OPS ? s_op_names[op] : "?";
}

//  Checks one right's list of patterns; returns 0 or -1 with a line.
static int
s_patterns_check (const char *identity, const char *op, const char *value, char *error,
                  size_t error_size)
{
    if (strlen (value) > S_PATTERNS_MAX) {
        snprintf (error, error_size, "access/%s/%s: longer than %d characters", identity, op,
                  S_PATTERNS_MAX);
        return -1;
    }
    for (const char *item = value; *item;) {
        const char *comma = strchr (item, ',');
        size_t length = comma ? (size_t)(comma - item) : strlen (item);
        const char *star = memchr (item, '*', length);
        bool ok =
            length > 0 && length <= ZQ_QUEUE_NAME_MAX + 1 && (!star || star == item + length - 1);
        for (size_t i = 0; ok && i < length; i++)
            ok = isalnum ((unsigned char)item[i]) || strchr ("._-*", item[i]);
        if (!ok) {
            snprintf (error, error_size,
                      "access/%s/%s: '%.*s' is not a pattern (a queue name, or a prefix ending "
                      "in '*', comma-separated)",
                      identity, op, (int)(length > 80 ? 80 : length), item);
            return -1;
        }
        item = comma ? comma + 1 : item + length;
    }
    return 0;
}

//  Adds the Z85 key text to identity. Returns 0 or -1 with a line.
static int
s_key_add (zqi_access_t *self, s_identity_t *identity, const char *text, size_t length,
           const char *from, char *error, size_t error_size)
{
    char key[S_KEY_TEXT + 1];
    uint8_t binary[S_KEY_SIZE];
    if (length != S_KEY_TEXT) {
        snprintf (error, error_size, "access/%s: %s: not a Z85 public key (40 characters)",
                  identity->name, from);
        return -1;
    }
    memcpy (key, text, S_KEY_TEXT);
    key[S_KEY_TEXT] = '\0';
    if (!zmq_z85_decode (binary, key)) {
        snprintf (error, error_size, "access/%s: %s: not a Z85 public key", identity->name, from);
        return -1;
    }
    s_identity_t *holder = (s_identity_t *)zhashx_lookup (self->keys, key);
    if (holder == identity) {
        snprintf (error, error_size, "access/%s: %s: key %.8s... is listed twice", identity->name,
                  from, key);
        return -1;
    }
    if (holder) {
        snprintf (error, error_size, "access/%s: %s: key %.8s... is %s's already", identity->name,
                  from, key, holder->name);
        return -1;
    }
    if (zhashx_size (self->keys) >= S_KEYS_MAX) {
        snprintf (error, error_size, "access: more than %d keys", S_KEYS_MAX);
        return -1;
    }
    zhashx_insert (self->keys, key, identity);
    return 0;
}

//  Adds the public key of the certificate file at path.
static int
s_cert_add (zqi_access_t *self, s_identity_t *identity, const char *path, char *error,
            size_t error_size)
{
    char reason[512] = "";
    zcert_t *cert = zqi_curve_cert_load (path, false, reason, sizeof reason);
    if (!cert) {
        snprintf (error, error_size, "access/%s/certs: %s", identity->name, reason);
        return -1;
    }
    int rc =
        s_key_add (self, identity, zcert_public_txt (cert), S_KEY_TEXT, path, error, error_size);
    zcert_destroy (&cert);
    return rc;
}

//  Adds the keys of certs: a certificate file, or a directory whose
//  regular files not ending in "_secret" are certificates.
static int
s_certs_add (zqi_access_t *self, s_identity_t *identity, const char *certs, char *error,
             size_t error_size)
{
    struct stat status;
    if (stat (certs, &status)) {
        snprintf (error, error_size, "access/%s/certs: %s: %s", identity->name, certs,
                  strerror (errno));
        return -1;
    }
    if (!S_ISDIR (status.st_mode))
        return s_cert_add (self, identity, certs, error, error_size);
    DIR *dir = opendir (certs);
    if (!dir) {
        snprintf (error, error_size, "access/%s/certs: %s: %s", identity->name, certs,
                  strerror (errno));
        return -1;
    }
    int rc = 0;
    struct dirent *entry;
    while (rc == 0 && (entry = readdir (dir))) {
        const char *name = entry->d_name;
        size_t length = strlen (name);
        if (name[0] == '.' || (length > 7 && streq (name + length - 7, "_secret")))
            continue;
        char *path = zsys_sprintf ("%s/%s", certs, name);
        if (!path) {
            snprintf (error, error_size, "out of memory");
            rc = -1;
        } else if (stat (path, &status) == 0 && S_ISREG (status.st_mode))
            rc = s_cert_add (self, identity, path, error, error_size);
        zstr_free (&path);
    }
    closedir (dir);
    return rc;
}

//  Reads one identity (a child of the access section).
static int
s_identity_parse (zqi_access_t *self, zconfig_t *section, char *error, size_t error_size)
{
    const char *name = zconfig_name (section);
    if (!name || !*name || strlen (name) > 64 ||
        zlistx_size (self->identities) >= S_IDENTITIES_MAX) {
        snprintf (error, error_size,
                  "access/%s: an identity name is 1 to 64 characters, at most "
                  "%d identities",
                  name ? name : "", S_IDENTITIES_MAX);
        return -1;
    }
    for (s_identity_t *each = (s_identity_t *)zlistx_first (self->identities); each;
         each = (s_identity_t *)zlistx_next (self->identities))
        if (streq (each->name, name)) {
            snprintf (error, error_size, "access/%s: given twice", name);
            return -1;
        }
    s_identity_t *identity = (s_identity_t *)calloc (1, sizeof *identity);
    if (identity)
        identity->name = strdup (name);
    for (int op = 0; identity && op < ZQI_ACCESS_OPS; op++)
        identity->rights[op] = strdup ("");
    if (!identity || !identity->name || !identity->rights[ZQI_ACCESS_OPS - 1]) {
        void *item = identity;
        s_identity_destroy (&item);
        snprintf (error, error_size, "out of memory");
        return -1;
    }
    zlistx_add_end (self->identities, identity);
    bool anonymous = streq (name, ZQI_ACCESS_ANONYMOUS);
    if (anonymous)
        self->anonymous = identity;
    for (zconfig_t *item = zconfig_child (section); item; item = zconfig_next (item)) {
        const char *key = zconfig_name (item);
        const char *value = zconfig_value (item) ? zconfig_value (item) : "";
        int op = -1;
        for (int each = 0; each < ZQI_ACCESS_OPS; each++)
            if (streq (key, s_op_names[each]))
                op = each;
        if (op >= 0) {
            if (s_patterns_check (name, key, value, error, error_size))
                return -1;
            char *copy = strdup (value);
            if (!copy) {
                snprintf (error, error_size, "out of memory");
                return -1;
            }
            free (identity->rights[op]);
            identity->rights[op] = copy;
        } else if (anonymous && (streq (key, "keys") || streq (key, "certs"))) {
            snprintf (error, error_size,
                      "access/anonymous/%s: the anonymous identity (clients without CURVE) has "
                      "no keys",
                      key);
            return -1;
        } else if (streq (key, "keys")) {
            for (const char *text = value; *text;) {
                const char *comma = strchr (text, ',');
                size_t length = comma ? (size_t)(comma - text) : strlen (text);
                if (s_key_add (self, identity, text, length, "keys", error, error_size))
                    return -1;
                text = comma ? comma + 1 : text + length;
            }
        } else if (streq (key, "certs")) {
            if (s_certs_add (self, identity, value, error, error_size))
                return -1;
        } else {
            snprintf (error, error_size,
                      "access/%s/%s: unknown key (keys, certs, put, consume, admin)", name, key);
            return -1;
        }
    }
    return 0;
}

void
zqi_access_clock_set (zqi_access_t *self, const zqi_clock_t *clock)
{
    if (self)
        self->clock = clock;
}

zqi_access_t *
zqi_access_new (zconfig_t *section, char *error, size_t error_size)
{
    zqi_access_t *self = (zqi_access_t *)calloc (1, sizeof *self);
    if (self) {
        self->identities = zlistx_new ();
        self->keys = zhashx_new ();
    }
    if (!self || !self->identities || !self->keys) {
        zqi_access_destroy (&self);
        snprintf (error, error_size, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    zlistx_set_destructor (self->identities, s_identity_destroy);
    for (zconfig_t *child = zconfig_child (section); child; child = zconfig_next (child))
        if (s_identity_parse (self, child, error, error_size)) {
            zqi_access_destroy (&self);
            errno = EINVAL;
            return NULL;
        }
    return self;
}

void
zqi_access_destroy (zqi_access_t **self_p)
{
    if (self_p && *self_p) {
        zqi_access_t *self = *self_p;
        zhashx_destroy (&self->keys);
        zlistx_destroy (&self->identities);
        free (self);
        *self_p = NULL;
    }
}

void
zqi_access_require_identity (zqi_access_t *self)
{
    self->identified = true;
}

static s_identity_t *
s_identity_find (zqi_access_t *self, const char *identity)
{
    if (!identity || !*identity || streq (identity, ZQI_ACCESS_ANONYMOUS))
        return self->anonymous;
    for (s_identity_t *each = (s_identity_t *)zlistx_first (self->identities); each;
         each = (s_identity_t *)zlistx_next (self->identities))
        if (streq (each->name, identity))
            return each;
    return NULL;
}

bool
zqi_access_match (const char *patterns, const char *name)
{
    size_t name_length = strlen (name);
    for (const char *item = patterns; item && *item;) {
        const char *comma = strchr (item, ',');
        size_t length = comma ? (size_t)(comma - item) : strlen (item);
        if (length && item[length - 1] == '*') {
            if (name_length >= length - 1 && memcmp (item, name, length - 1) == 0)
                return true;
        } else if (length == name_length && memcmp (item, name, length) == 0)
            return true;
        item = comma ? comma + 1 : NULL;
    }
    return false;
}

bool
zqi_access_allows (zqi_access_t *self, const char *identity, zqi_access_op_t op, const char *queue)
{
    if (!self || op < 0 || op >= ZQI_ACCESS_OPS)
        return self == NULL;
    bool anonymous = !identity || !*identity || streq (identity, ZQI_ACCESS_ANONYMOUS);
    if (anonymous && self->identified)
        return false;
    s_identity_t *found = s_identity_find (self, identity);
    if (!found)
        //  Without CURVE and without an "anonymous" identity: every right.
        return anonymous && !self->anonymous;
    return queue ? zqi_access_match (found->rights[op], queue) : *found->rights[op] != '\0';
}

const char *
zqi_access_keyed (zqi_access_t *self)
{
    s_identity_t *holder = self ? (s_identity_t *)zhashx_first (self->keys) : NULL;
    return holder ? holder->name : NULL;
}

void
zqi_access_refused (zqi_access_t *self, const char *identity, zqi_access_op_t op, const char *queue,
                    const char *where)
{
    if (!self)
        return;
    s_identity_t *found = s_identity_find (self, identity);
    if (!found)
        return; //  an identity with every right is never refused
    found->refused++;
    uint64_t skipped;
    if (op >= 0 && op < ZQI_ACCESS_OPS &&
        zqi_log_limit_due (&found->refusal_log[op], zqi_clock_mono (self->clock), S_LOG_IVL_MS,
                           &skipped))
        zqi_log (ZQ_LOG_WARNING,
                 "zq_device: access: %s may not %s %s (%s); refusals of this identity: %" PRIu64
                 ", %" PRIu64 " not logged since this right's last line",
                 identity && *identity ? identity : ZQI_ACCESS_ANONYMOUS, zqi_access_op_name (op),
                 queue ? queue : "any queue", where, found->refused, skipped);
}

//  ---- ZAP handler (RFC 27) ----------------------------------------------

zsock_t *
zqi_access_zap_new (char *error, size_t error_size)
{
    zsock_t *zap = zsock_new (ZMQ_REP);
    if (!zap) {
        snprintf (error, error_size, "cannot create the ZAP handler's socket");
        errno = ENOMEM;
        return NULL;
    }
    zsock_set_linger (zap, 0);
    if (zmq_bind (zsock_resolve (zap), S_ZAP_ENDPOINT)) {
        int saved = errno;
        snprintf (error, error_size,
                  saved == EADDRINUSE ? "a ZAP handler (zauth) already runs in this process; "
                                        "one device per process may check its clients"
                                      : "cannot bind the ZAP handler: %s",
                  zmq_strerror (saved));
        zsock_destroy (&zap);
        errno = saved;
        return NULL;
    }
    return zap;
}

//  Decides one ZAP request: returns the identity's name to admit it (as
//  its User-Id), or NULL with the reason in reason.
static const char *
s_admit (zqi_access_t *self, const char *domain, const char *mechanism, zframe_t *credentials,
         const char **reason_p)
{
    s_identity_t *identity = NULL;
    if (streq (mechanism, "CURVE")) {
        char key[S_KEY_TEXT + 1];
        if (!credentials || zframe_size (credentials) != S_KEY_SIZE) {
            *reason_p = "malformed CURVE credentials";
            return NULL;
        }
        zmq_z85_encode (key, zframe_data (credentials), S_KEY_SIZE);
        identity = (s_identity_t *)zhashx_lookup (self->keys, key);
        if (!identity) {
            self->strangers++;
            uint64_t skipped;
            if (zqi_log_limit_due (&self->stranger_log, zqi_clock_mono (self->clock), S_LOG_IVL_MS,
                                   &skipped))
                zqi_log (ZQ_LOG_WARNING,
                         "zq_device: access: refused a CURVE key no identity holds (%s) at the "
                         "handshake; such refusals: %" PRIu64 ", %" PRIu64
                         " not logged since the last line",
                         key, self->strangers, skipped);
            *reason_p = "unknown key";
            return NULL;
        }
    } else if (streq (mechanism, "NULL")) {
        identity = self->anonymous;
        if (!identity)
            return ZQI_ACCESS_ANONYMOUS;
    } else {
        *reason_p = "mechanism not allowed";
        return NULL;
    }
    //  The domain names the one right the socket serves: "put NAME",
    //  "consume NAME", "admin" (some admin right); "" (the queue kind's
    //  socket) asks each message instead.
    zqi_access_op_t op = ZQI_ACCESS_OPS;
    const char *queue = NULL;
    if (streq (domain, ZQI_ACCESS_DOMAIN_ADMIN))
        op = ZQI_ACCESS_ADMIN;
    else if (strncmp (domain, "put ", 4) == 0) {
        op = ZQI_ACCESS_PUT;
        queue = domain + 4;
    } else if (strncmp (domain, "consume ", 8) == 0) {
        op = ZQI_ACCESS_CONSUME;
        queue = domain + 8;
    }
    if (op != ZQI_ACCESS_OPS) {
        bool allowed =
            queue ? zqi_access_match (identity->rights[op], queue) : *identity->rights[op] != '\0';
        if (!allowed) {
            zqi_access_refused (self, identity->name, op, queue, "refused at the handshake");
            *reason_p = "denied";
            return NULL;
        }
    }
    return identity->name;
}

void
zqi_access_zap_answer (zqi_access_t *self, zsock_t *zap)
{
    zmsg_t *request = zqi_device_recv_nowait (zap);
    if (!request)
        return;
    char *version = zmsg_popstr (request);
    zframe_t *sequence = zmsg_pop (request);
    char *domain = zmsg_popstr (request);
    char *address = zmsg_popstr (request);
    char *routing_id = zmsg_popstr (request);
    char *mechanism = zmsg_popstr (request);
    zframe_t *credentials = zmsg_pop (request);
    const char *reason = "malformed request";
    const char *user_id = NULL;
    if (version && streq (version, "1.0") && sequence && domain && mechanism)
        user_id = s_admit (self, domain, mechanism, credentials, &reason);
    zmsg_t *reply = zmsg_new ();
    if (reply) {
        zmsg_addstr (reply, "1.0");
        if (sequence)
            zmsg_append (reply, &sequence);
        else
            zmsg_addstr (reply, "");
        zmsg_addstr (reply, user_id ? "200" : "400");
        zmsg_addstr (reply, user_id ? "OK" : reason);
        zmsg_addstr (reply, user_id ? user_id : "");
        zmsg_addmem (reply, NULL, 0);
        zmsg_send (&reply, zap);
    }
    zframe_destroy (&sequence);
    zframe_destroy (&credentials);
    zstr_free (&version);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&routing_id);
    zstr_free (&mechanism);
    zmsg_destroy (&request);
}
