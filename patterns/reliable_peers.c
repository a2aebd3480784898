/*  =========================================================================
    reliable_peers - the servers of a producer or consumer opened on more
    than one endpoint.

    With one endpoint the producer and consumer use a DEALER, and there is
    one server. With several, the socket is a ROUTER with
    ZMQ_ROUTER_MANDATORY, and each endpoint connects under a routing id of
    our choosing (ZMQ_CONNECT_ROUTING_ID): every frame sent names the
    server it goes to, every frame received says which server sent it.
    What the roles keep per server (liveness, the server instance, the
    subscriptions sent) lives here; what they send stays theirs.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "reliable.h"

int
zqi_r_peers_open (zqi_r_peers_t *peers, zq_pattern_ctx_t *ctx)
{
    memset (peers, 0, sizeof *peers);
    peers->multi = zsock_type (ctx->sock) == ZMQ_ROUTER;
    if (!peers->multi) {
        peers->count = 1;
        return 0;
    }
    //  A server not connected (or gone) fails the send at once with
    //  EHOSTUNREACH, so the caller can try another.
    int on = 1;
    return zmq_setsockopt (ctx->handle, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
}

int
zqi_r_peers_attaching (zqi_r_peers_t *peers, void *handle, const char *endpoint, bool bind)
{
    if (!peers->multi)
        return 0;
    //  Servers are found by connecting: a server that connected to us
    //  would come under a routing id we cannot know.
    if (bind || peers->count == ZQI_R_PEERS_MAX)
        return zqi_fail (EINVAL);
    zqi_r_peer_t *peer = &peers->peers[peers->count];
    //  Routing ids starting with a zero octet are libzmq's own.
    int size = snprintf (peer->routing_id, sizeof peer->routing_id, "zq-server-%u",
                         (unsigned)peers->count);
    peer->routing_id_size = (uint8_t)size;
    if (zmq_setsockopt (handle, ZMQ_CONNECT_ROUTING_ID, peer->routing_id, (size_t)size))
        return -1;
    peers->count++;
    return 0;
}

int
zqi_r_peers_address (zqi_r_peers_t *peers, void *handle, uint32_t index)
{
    if (!peers->multi)
        return 0;
    zqi_r_peer_t *peer = &peers->peers[index];
    if (zmq_send (handle, peer->routing_id, peer->routing_id_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) ==
        -1) {
        if (errno == EHOSTUNREACH)
            peer->connected = false;
        return -1;
    }
    peer->connected = true;
    return 0;
}

int
zqi_r_peers_send (zqi_r_peers_t *peers, void *handle, uint32_t index, const void *data, size_t size)
{
    if (zqi_r_peers_address (peers, handle, index))
        return -1;
    return zmq_send (handle, data, size, ZMQ_DONTWAIT) == -1 ? -1 : 0;
}

int
zqi_r_peers_recv_from (zqi_r_peers_t *peers, void *handle, uint32_t *index_p)
{
    *index_p = 0;
    if (!peers->multi)
        return 0;
    zmq_msg_t frame;
    if (zqi_r_recv_frame (handle, &frame))
        return -1;
    size_t size = zmq_msg_size (&frame);
    bool more = zmq_msg_more (&frame);
    *index_p = ZQI_R_NONE;
    for (uint32_t index = 0; index < peers->count; index++)
        if (peers->peers[index].routing_id_size == size &&
            memcmp (peers->peers[index].routing_id, zmq_msg_data (&frame), size) == 0)
            *index_p = index;
    zmq_msg_close (&frame);
    if (!more || *index_p == ZQI_R_NONE) {
        //  Not one of ours (nothing else connects to a socket that only
        //  connects), or a routing frame alone: skipped.
        if (more)
            zqi_drain (handle);
        return zqi_fail (ZQ_EPROTO);
    }
    return 0;
}
