/*  =========================================================================
    zq_curve - CURVE security for a queue's socket, from its options:
    certificates read with CZMQ's zconfig and zcert, keys checked before
    use, and CZMQ's zauth actor for a server's allowed clients.

    A queue is a CURVE client when curve_server_key or curve_server_cert
    is set, a CURVE server when only curve_cert is; otherwise nothing here
    touches its socket. Everything is applied before the socket binds or
    connects, so no connection is ever made in clear.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_internal.h"
#include <pthread.h>
#include <sys/stat.h>

//  libzmq's ZAP endpoint (RFC 27): one handler per ZeroMQ context.
#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
//  A Z85 key is 40 characters for 32 bytes.
#define S_KEY_TEXT_SIZE 40
#define S_KEY_SIZE      32
//  A certificate is a few hundred bytes; anything far larger is not one.
#define S_CERT_MAX_BYTES 65536

//  Serialises zq's own check-then-start of a ZAP handler.
static pthread_mutex_t s_zap_mutex = PTHREAD_MUTEX_INITIALIZER;

//  Decodes a Z85 key of exactly 40 characters into key. Returns 0 or -1.
static int
s_key_decode (const char *text, uint8_t *key)
{
    if (!text || strlen (text) != S_KEY_TEXT_SIZE)
        return -1;
    return zmq_z85_decode (key, text) ? 0 : -1;
}

static bool
s_key_is_zero (const uint8_t *key)
{
    for (size_t i = 0; i < S_KEY_SIZE; i++)
        if (key[i])
            return false;
    return true;
}

//  Loads the ZPL file at path if it is a readable regular file of sane
//  size; returns it or NULL with a reason in error.
static zconfig_t *
s_config_load (const char *path, char *error, size_t error_size)
{
    struct stat status;
    if (stat (path, &status)) {
        snprintf (error, error_size, "cannot read %s: %s", path, strerror (errno));
        return NULL;
    }
    if (!S_ISREG (status.st_mode) || status.st_size > S_CERT_MAX_BYTES) {
        snprintf (error, error_size, "%s is not a certificate file", path);
        return NULL;
    }
    FILE *file = fopen (path, "r");
    if (!file) {
        snprintf (error, error_size, "cannot read %s: %s", path, strerror (errno));
        return NULL;
    }
    fclose (file);
    zconfig_t *config = zconfig_load (path);
    if (!config)
        snprintf (error, error_size, "%s is not a certificate (ZPL) file", path);
    return config;
}

zcert_t *
zqi_curve_cert_load (const char *path, bool need_secret, char *error, size_t error_size)
{
    if (!path || !*path) {
        snprintf (error, error_size, "no certificate file given");
        errno = EINVAL;
        return NULL;
    }
    //  As zcert_load does: PATH_secret (both keys) first, then PATH.
    char *secret_path = zsys_sprintf ("%s_secret", path);
    if (!secret_path) {
        snprintf (error, error_size, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    const char *chosen = path;
    struct stat status;
    if (stat (secret_path, &status) == 0 && S_ISREG (status.st_mode))
        chosen = secret_path;
    zconfig_t *config = s_config_load (chosen, error, error_size);
    zcert_t *cert = NULL;
    if (config) {
        uint8_t public_key[S_KEY_SIZE] = {0};
        uint8_t secret_key[S_KEY_SIZE] = {0};
        const char *public_text = zconfig_get (config, "curve/public-key", NULL);
        const char *secret_text = zconfig_get (config, "curve/secret-key", NULL);
        char derived[S_KEY_TEXT_SIZE + 1] = "";
        if (s_key_decode (public_text, public_key))
            snprintf (error, error_size, "%s: curve/public-key is not a Z85 key", chosen);
        else if (need_secret && (!secret_text || !*secret_text))
            snprintf (error, error_size,
                      "%s: no curve/secret-key (give the secret certificate zmakecert wrote)",
                      chosen);
        else if (secret_text && *secret_text &&
                 (s_key_decode (secret_text, secret_key) || s_key_is_zero (secret_key)))
            snprintf (error, error_size, "%s: curve/secret-key is not a Z85 key", chosen);
        else if (secret_text && *secret_text &&
                 (zmq_curve_public (derived, secret_text) || strcmp (derived, public_text) != 0))
            snprintf (error, error_size, "%s: curve/secret-key does not match curve/public-key",
                      chosen);
        else {
            cert = zcert_new_from (public_key, secret_key);
            if (!cert)
                snprintf (error, error_size, "out of memory");
        }
        zconfig_destroy (&config);
    }
    zstr_free (&secret_path);
    if (!cert)
        errno = EINVAL;
    return cert;
}

int
zqi_curve_secret_private (const char *path, char *error, size_t error_size)
{
    char *secret_path = zsys_sprintf ("%s_secret", path ? path : "");
    if (!secret_path) {
        snprintf (error, error_size, "out of memory");
        return zqi_fail (ENOMEM);
    }
    struct stat status;
    const char *chosen = path;
    if (stat (secret_path, &status) == 0 && S_ISREG (status.st_mode))
        chosen = secret_path;
    else if (stat (path, &status)) {
        int saved = errno;
        snprintf (error, error_size, "cannot read %s: %s", path, strerror (saved));
        zstr_free (&secret_path);
        return zqi_fail (saved);
    }
    int rc = 0;
    if (status.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf (error, error_size,
                  "%s has mode %04o: a secret key must not be open to group or others "
                  "(chmod 600 %s)",
                  chosen, (unsigned)(status.st_mode & 07777), chosen);
        rc = zqi_fail (EACCES);
    }
    zstr_free (&secret_path);
    return rc;
}

//  True if a ZAP handler is bound in CZMQ's context (ours or anyone's).
static bool
s_zap_handler_running (void)
{
    zsock_t *probe = zsock_new (ZMQ_REP);
    if (!probe)
        return false;
    bool running = false;
    if (zmq_bind (zsock_resolve (probe), S_ZAP_ENDPOINT) == 0)
        zmq_unbind (zsock_resolve (probe), S_ZAP_ENDPOINT);
    else
        running = (errno == EADDRINUSE);
    zsock_destroy (&probe);
    return running;
}

int
zqi_curve_auth_start (const char *location, zactor_t **auth_p, char *error, size_t error_size)
{
    *auth_p = NULL;
    if (!streq (location, CURVE_ALLOW_ANY)) {
        struct stat status;
        const char *reason = NULL;
        if (stat (location, &status))
            reason = strerror (errno);
        else if (!S_ISDIR (status.st_mode))
            reason = "not a directory";
        if (reason) {
            snprintf (error, error_size, "%s: %s", location, reason);
            return zqi_fail (EINVAL);
        }
    }
    pthread_mutex_lock (&s_zap_mutex);
    int rc = 0;
    if (s_zap_handler_running ()) {
        snprintf (error, error_size,
                  "a ZAP handler (zauth) already runs in this process; one queue or device "
                  "per process may check allowed clients");
        rc = zqi_fail (EADDRINUSE);
    } else {
        *auth_p = zactor_new (zauth, NULL);
        if (!*auth_p || zstr_sendx (*auth_p, "CURVE", location, NULL) || zsock_wait (*auth_p)) {
            zactor_destroy (auth_p);
            snprintf (error, error_size, "cannot start the zauth actor");
            rc = zqi_fail (ENOMEM);
        }
    }
    pthread_mutex_unlock (&s_zap_mutex);
    return rc;
}

static int
s_setsockopt (void *handle, int option, const void *value, size_t size)
{
    if (zmq_setsockopt (handle, option, value, size)) {
        int saved = errno;
        zqi_log (ZQ_LOG_ERROR, "zq_queue: CURVE socket option %d refused: %s", option,
                 zmq_strerror (saved));
        return zqi_fail (saved);
    }
    return 0;
}

int
zqi_curve_apply (zsock_t *sock, const zq_options_t *options, zactor_t **auth_p)
{
    *auth_p = NULL;
    const char *cert_path = zq_options_get_str (options, "curve_cert");
    const char *server_key = zq_options_get_str (options, "curve_server_key");
    const char *server_cert = zq_options_get_str (options, "curve_server_cert");
    const char *clients = zq_options_get_str (options, "curve_clients");
    if (!cert_path || !server_key || !server_cert || !clients)
        return 0; //  a build without the CURVE options
    bool client = *server_key || *server_cert;
    bool server = !client && *cert_path;
    if (*clients && !server) {
        zqi_log (ZQ_LOG_ERROR, "zq_queue: curve_clients is for a CURVE server (curve_cert "
                               "without curve_server_key or curve_server_cert)");
        return zqi_fail (EINVAL);
    }
    if (!client && !server)
        return 0;
    if (!zsys_has_curve ()) {
        zqi_log (ZQ_LOG_ERROR, "zq_queue: CURVE options set, but libzmq was built without CURVE");
        return zqi_fail (ENOTSUP);
    }
    if (*server_key && *server_cert) {
        zqi_log (ZQ_LOG_ERROR, "zq_queue: set curve_server_key or curve_server_cert, not both");
        return zqi_fail (EINVAL);
    }
    char error[512] = "";
    zcert_t *cert = NULL;
    if (*cert_path) {
        cert = zqi_curve_cert_load (cert_path, true, error, sizeof error);
        if (!cert) {
            zqi_log (ZQ_LOG_ERROR, "zq_queue: curve_cert: %s", error);
            return zqi_fail (EINVAL);
        }
    } else {
        //  A client without a certificate of its own: a fresh key pair,
        //  accepted by servers that allow any client.
        cert = zcert_new ();
        if (!cert)
            return zqi_fail (ENOMEM);
    }
    void *handle = zsock_resolve (sock);
    int rc = 0;
    if (client) {
        uint8_t server_public[S_KEY_SIZE];
        if (*server_key) {
            if (s_key_decode (server_key, server_public)) {
                zqi_log (ZQ_LOG_ERROR,
                         "zq_queue: curve_server_key: not a Z85 public key (40 characters)");
                rc = zqi_fail (EINVAL);
            }
        } else {
            zcert_t *public_cert = zqi_curve_cert_load (server_cert, false, error, sizeof error);
            if (public_cert) {
                memcpy (server_public, zcert_public_key (public_cert), S_KEY_SIZE);
                zcert_destroy (&public_cert);
            } else {
                zqi_log (ZQ_LOG_ERROR, "zq_queue: curve_server_cert: %s", error);
                rc = zqi_fail (EINVAL);
            }
        }
        if (rc == 0)
            rc = s_setsockopt (handle, ZMQ_CURVE_SERVERKEY, server_public, S_KEY_SIZE);
    } else {
        int on = 1;
        rc = s_setsockopt (handle, ZMQ_CURVE_SERVER, &on, sizeof on);
    }
    if (rc == 0)
        rc = s_setsockopt (handle, ZMQ_CURVE_PUBLICKEY, zcert_public_key (cert), S_KEY_SIZE);
    if (rc == 0)
        rc = s_setsockopt (handle, ZMQ_CURVE_SECRETKEY, zcert_secret_key (cert), S_KEY_SIZE);
    zcert_destroy (&cert);
    if (rc == 0 && server && *clients) {
        rc = zqi_curve_auth_start (clients, auth_p, error, sizeof error);
        if (rc)
            zqi_log (ZQ_LOG_ERROR, "zq_queue: curve_clients: %s", error);
    }
    return rc;
}
