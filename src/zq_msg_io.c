/*  =========================================================================
    zq_msg_io - a message on ZeroMQ frames: sending (a large body leaves
    on its own frame, handed to libzmq without a copy), receiving (the
    body stays in the frame that carried it), zmsg_t encode and decode.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_msg_internal.h"

//  Accepts a libzmq socket, a zsock_t or a zactor_t.
static inline void *
s_resolve (void *socket)
{
    if (socket && zsock_is (socket))
        return zsock_resolve (socket);
    if (socket && zactor_is (socket))
        return zsock_resolve (socket);
    return socket;
}

//  A large body travels as a frame that points at the message's own body
//  buffer. The holder records who frees it; libzmq calls s_body_free when
//  the last reference to the frame goes, in whichever thread that is. A
//  frame built but never sent is closed with cancelled set, so the message
//  keeps its body.
typedef struct {
    bool cancelled;
    bool is_frame;   //  the body lives in frame (a received message)
    zmq_msg_t frame; //  when is_frame
} s_body_holder_t;

static void
s_body_free (void *data, void *hint)
{
    s_body_holder_t *holder = (s_body_holder_t *)hint;
    if (holder->cancelled)
        return;
    if (holder->is_frame)
        zmq_msg_close (&holder->frame);
    else
        free (data);
    free (holder);
}

//  Gives the body back to self after a failed send of its body frame.
static void
s_body_restore (zq_msg_t *self, s_body_holder_t *holder, zmq_msg_t *body_frame)
{
    int saved_errno = errno;
    holder->cancelled = true;
    zmq_msg_close (body_frame); //  runs s_body_free, which does nothing now
    if (holder->is_frame) {
        zmq_msg_init (&self->frame);
        zmq_msg_move (&self->frame, &holder->frame);
        zmq_msg_close (&holder->frame);
        self->body = (const uint8_t *)zmq_msg_data (&self->frame) + self->body_offset;
    }
    free (holder);
    errno = saved_errno;
}

static int
s_send_two_frames (zq_msg_t *self, void *handle, int flags, size_t header_size)
{
    ZQ_ASSERT (self->body_store != ZQI_MSG_BODY_INLINE);
    s_body_holder_t *holder = (s_body_holder_t *)malloc (sizeof (s_body_holder_t));
    if (!holder)
        return zqi_fail (ENOMEM);
    zmq_msg_t header_frame, body_frame;
    if (zmq_msg_init_size (&header_frame, header_size)) {
        free (holder);
        return zqi_fail (ENOMEM);
    }
    zqi_msg_header_write (self, (uint8_t *)zmq_msg_data (&header_frame));

    holder->cancelled = false;
    holder->is_frame = self->body_store == ZQI_MSG_BODY_FRAME;
    if (holder->is_frame) {
        zmq_msg_init (&holder->frame);
        zmq_msg_move (&holder->frame, &self->frame);
    }
    void *body = holder->is_frame ? (uint8_t *)zmq_msg_data (&holder->frame) + self->body_offset
                                  : self->body_heap;
    if (zmq_msg_init_data (&body_frame, body, self->body_size, s_body_free, holder)) {
        //  no frame was made, so nothing will call s_body_free
        if (holder->is_frame) {
            zmq_msg_init (&self->frame);
            zmq_msg_move (&self->frame, &holder->frame);
            zmq_msg_close (&holder->frame);
        }
        free (holder);
        zmq_msg_close (&header_frame);
        return zqi_fail (ENOMEM);
    }
    if (zmq_msg_send (&header_frame, handle, flags | ZMQ_SNDMORE) == -1) {
        int saved_errno = errno;
        zmq_msg_close (&header_frame);
        s_body_restore (self, holder, &body_frame);
        return zqi_fail (saved_errno);
    }
    if (zmq_msg_send (&body_frame, handle, flags) == -1) {
        s_body_restore (self, holder, &body_frame);
        return -1;
    }
    //  libzmq owns the body now
    self->body_store = ZQI_MSG_BODY_INLINE;
    self->body_heap = NULL;
    return 0;
}

int
zqi_msg_send_to (zq_msg_t **self_p, void *handle, int flags)
{
    ZQ_ASSERT (self_p && *self_p);
    zq_msg_t *self = *self_p;
    size_t header_size = zqi_msg_header_size (self);
    if (self->body_size >= ZQ_MSG_ZEROCOPY_MIN) {
        if (s_send_two_frames (self, handle, flags, header_size))
            return -1;
    } else {
        zmq_msg_t frame;
        if (zmq_msg_init_size (&frame, header_size + self->body_size))
            return zqi_fail (ENOMEM);
        uint8_t *out = zqi_msg_header_write (self, (uint8_t *)zmq_msg_data (&frame));
        memcpy (out, self->body, self->body_size);
        if (zmq_msg_send (&frame, handle, flags) == -1) {
            int saved_errno = errno;
            zmq_msg_close (&frame);
            return zqi_fail (saved_errno);
        }
    }
    zq_msg_destroy (self_p);
    return 0;
}

int
zq_msg_send (zq_msg_t **self_p, void *socket, int flags)
{
    ZQ_ASSERT (self_p && *self_p);
    return zqi_msg_send_to (self_p, s_resolve (socket), flags);
}

int
zq_msg_encode (zq_msg_t **self_p, zmsg_t *dest)
{
    ZQ_ASSERT (self_p && *self_p && dest);
    zq_msg_t *self = *self_p;
    size_t header_size = zqi_msg_header_size (self);
    bool two_frames = self->body_size >= ZQ_MSG_ZEROCOPY_MIN;
    zframe_t *first = zframe_new (NULL, header_size + (two_frames ? 0 : self->body_size));
    zframe_t *second = two_frames ? zframe_new (self->body, self->body_size) : NULL;
    if (!first || (two_frames && !second)) {
        zframe_destroy (&first);
        zframe_destroy (&second);
        return zqi_fail (ENOMEM);
    }
    uint8_t *out = zqi_msg_header_write (self, zframe_data (first));
    if (!two_frames)
        memcpy (out, self->body, self->body_size);
    zmsg_append (dest, &first);
    if (second)
        zmsg_append (dest, &second);
    zq_msg_destroy (self_p);
    return 0;
}

zq_msg_t *
zq_msg_decode_buffers (const void *const *frames, const size_t *sizes, size_t count,
                       size_t max_size)
{
    if (max_size == 0)
        max_size = ZQ_MSG_MAX_SIZE_DEFAULT;
    if (count == 0 || count > 2 || !frames || !sizes) {
        errno = ZQ_EPROTO;
        return NULL;
    }
    size_t total = sizes[0];
    if (count == 2)
        total = total > SIZE_MAX - sizes[1] ? SIZE_MAX : total + sizes[1];
    if (total > max_size) {
        errno = ZQ_ETOOBIG;
        return NULL;
    }
    zqi_envelope_t envelope;
    if (zqi_envelope_parse ((const uint8_t *)frames[0], sizes[0],
                            count == 2 ? (const uint8_t *)frames[1] : NULL,
                            count == 2 ? sizes[1] : 0, true, &envelope))
        return NULL;
    zq_msg_t *self = zqi_msg_build (&envelope);
    if (self && zqi_msg_store_body (self, envelope.body, envelope.body_size)) {
        zq_msg_destroy (&self);
        errno = ENOMEM;
    }
    return self;
}

zq_msg_t *
zq_msg_decode (zmsg_t *src, size_t max_size)
{
    ZQ_ASSERT (src);
    size_t count = zmsg_size (src);
    zframe_t *first = zmsg_pop (src);
    zframe_t *second = zmsg_pop (src);
    while (zmsg_size (src) > 0) {
        zframe_t *frame = zmsg_pop (src);
        zframe_destroy (&frame);
    }
    zq_msg_t *self = NULL;
    if (count == 0 || count > 2)
        errno = ZQ_EPROTO;
    else {
        const void *buffers[2] = {zframe_data (first), second ? zframe_data (second) : NULL};
        size_t sizes[2] = {zframe_size (first), second ? zframe_size (second) : 0};
        self = zq_msg_decode_buffers (buffers, sizes, count, max_size);
    }
    int saved_errno = errno;
    zframe_destroy (&first);
    zframe_destroy (&second);
    errno = saved_errno;
    return self;
}

//  Receives one more frame into frame, retrying on EINTR: once the first
//  frame of a message has arrived, the rest are already there.
static int
s_recv_more (zmq_msg_t *frame, void *handle, int flags)
{
    int rc;
    while ((rc = zmq_msg_recv (frame, handle, flags)) == -1 && errno == EINTR)
        ;
    return rc;
}

//  Receives the frames after first (a frame with more to come) and decodes
//  the message: the two-frame form, or an error. Closes first.
static zq_msg_t *
s_recv_multipart (zmq_msg_t *first, void *handle, int flags, size_t max_size)
{
    zmq_msg_t frames[2];
    zmq_msg_init (&frames[0]);
    zmq_msg_move (&frames[0], first);
    zmq_msg_close (first);
    size_t count = 1;
    size_t total = zmq_msg_size (&frames[0]);
    int error = total > max_size ? ZQ_ETOOBIG : 0;
    bool more = true;
    //  Read every remaining frame of the message, keeping at most two
    //  and none once the message is known to be bad.
    while (more) {
        bool keep = count < 2 && !error;
        zmq_msg_t scratch;
        zmq_msg_t *frame = keep ? &frames[count] : &scratch;
        zmq_msg_init (frame);
        if (s_recv_more (frame, handle, flags) == -1) {
            int saved_errno = errno;
            zmq_msg_close (frame);
            for (size_t index = 0; index < count; index++)
                zmq_msg_close (&frames[index]);
            errno = saved_errno;
            return NULL;
        }
        more = zmq_msg_more (frame);
        size_t size = zmq_msg_size (frame);
        total = total > SIZE_MAX - size ? SIZE_MAX : total + size;
        if (!error && total > max_size)
            error = ZQ_ETOOBIG;
        if (keep)
            count++;
        else {
            zmq_msg_close (&scratch);
            if (!error)
                error = ZQ_EPROTO; //  a third frame
        }
    }
    zq_msg_t *self = NULL;
    zqi_envelope_t envelope;
    if (!error &&
        zqi_envelope_parse ((const uint8_t *)zmq_msg_data (&frames[0]), zmq_msg_size (&frames[0]),
                            (const uint8_t *)zmq_msg_data (&frames[1]), zmq_msg_size (&frames[1]),
                            true, &envelope))
        error = errno;
    if (!error && !(self = zqi_msg_build (&envelope)))
        error = errno;
    if (!error) {
        //  Keep the frame that holds the body and point into it.
        zmq_msg_init (&self->frame);
        zmq_msg_move (&self->frame, &frames[1]);
        self->body_store = ZQI_MSG_BODY_FRAME;
        self->body_offset = 0;
        self->body = (const uint8_t *)zmq_msg_data (&self->frame);
        self->body_size = envelope.body_size;
    }
    for (size_t index = 0; index < count; index++)
        zmq_msg_close (&frames[index]);
    if (error)
        errno = error;
    return self;
}

zq_msg_t *
zqi_msg_recv_from (void *handle, int flags, size_t max_size)
{
    zmq_msg_t first;
    zmq_msg_init (&first);
    if (zmq_msg_recv (&first, handle, flags) == -1) {
        int saved_errno = errno;
        zmq_msg_close (&first);
        errno = saved_errno;
        return NULL;
    }
    zq_msg_t *self = zqi_msg_from_frame (&first, handle, flags, max_size);
    int saved_errno = errno;
    zmq_msg_close (&first);
    errno = saved_errno;
    return self;
}

zq_msg_t *
zqi_msg_from_frame (zmq_msg_t *first, void *handle, int flags, size_t max_size)
{
    if (max_size == 0)
        max_size = ZQ_MSG_MAX_SIZE_DEFAULT;
    if (zmq_msg_more (first)) {
        ZQI_COUNT (ZQI_COUNT_MSG_DECODES);
        zq_msg_t *self = s_recv_multipart (first, handle, flags, max_size);
        int saved_errno = errno;
        zmq_msg_init (first); //  closed there: leave it closable
        errno = saved_errno;
        return self;
    }
    return zqi_msg_from_frame_at (first, 0, max_size);
}

zq_msg_t *
zqi_msg_from_frame_at (zmq_msg_t *frame, size_t offset, size_t max_size)
{
    //  A one-frame message keeps its frame and points into it.
    if (max_size == 0)
        max_size = ZQ_MSG_MAX_SIZE_DEFAULT;
    ZQI_COUNT (ZQI_COUNT_MSG_DECODES);
    ZQ_ASSERT (offset <= zmq_msg_size (frame));
    zq_msg_t *self = zqi_msg_struct_new ();
    if (!self)
        return NULL;
    zmq_msg_init (&self->frame);
    zmq_msg_move (&self->frame, frame);
    const uint8_t *data = (const uint8_t *)zmq_msg_data (&self->frame) + offset;
    size_t size = zmq_msg_size (&self->frame) - offset;
    zqi_envelope_t envelope;
    int error = 0;
    if (size > max_size)
        error = ZQ_ETOOBIG;
    else if (zqi_envelope_parse (data, size, NULL, 0, true, &envelope))
        error = errno;
    else {
        zqi_msg_init (self);
        self->body_store = ZQI_MSG_BODY_FRAME;
        self->body_offset = offset + envelope.header_size;
        self->body = data + envelope.header_size;
        self->body_size = envelope.body_size;
        if (zqi_msg_fill (self, &envelope) == 0)
            return self;
        zq_msg_destroy (&self); //  closes the frame
        errno = ENOMEM;
        return NULL;
    }
    zmq_msg_close (&self->frame);
    zqi_msg_struct_free (self);
    errno = error;
    return NULL;
}

zq_msg_t *
zq_msg_recv (void *socket, int flags, size_t max_size)
{
    return zqi_msg_recv_from (s_resolve (socket), flags, max_size);
}
