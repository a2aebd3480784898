#!/bin/sh
#   The layers stay as doc/DESIGN.md draws them, where a compiler cannot
#   tell: the pattern interface has generic hooks only and zq_options.c
#   holds no pattern's settings (each pattern declares its own); the
#   device dispatches on a queue's kind only through the kinds' ops
#   tables and opens no socket of its own (zqi_device_socket_new and
#   zqi_device_bind go through the library's socket helper); the device
#   reads time only through zq_clock (its clock is a test's to drive); an
#   envelope's layout is written once (zqi_envelope_t, src/zq_internal.h);
#   no library source file passes 900 lines. Each broken rule prints the
#   lines that break it.
top=$(cd "$(dirname "$0")/.." && pwd)
failed=0

#   $1 what is wrong; the rest: a grep -nE pattern and files.
s_none () {
    what=$1
    shift
    found=$(grep -nE "$@" 2>/dev/null)
    if [ -n "$found" ]; then
        echo "FAIL: $what:"
        echo "$found" | sed 's/^/    /'
        failed=1
    fi
}

cd "$top" || exit 1
s_none "a hook for one pattern's verb in zq_pattern_t (it belongs in that pattern's header)" \
    '\(\*(subscribers|reply|failed|post|confirmed|settle|declare|names|info|peek|purge|redrive)\)' \
    src/zq_pattern.h
s_none "a pattern's own setting in zq_options.c (the pattern declares it)" \
    '"(slow_subscriber|request_timeout_ms|retries|max_in_flight|spool_dir|outbox_dir|fsync|prefetch|visibility_timeout_ms|max_queues)"' \
    src/zq_options.c
s_none "a pattern's own verb in the queue core (it lives in patterns/)" \
    '^zq_queue_(subscribers|wait_subscribers|reply|failed|post|confirmed|ack|nack|touch|declare|names|info|peek|purge|redrive) \(' \
    src/zq_queue.c
s_none "the device asking a queue's kind instead of its ops table" \
    '(->|\.)kind (==|!=) ZQI_KIND_' \
    src/device/zq_device.c src/device/zq_device_admin.c src/device/zq_device_list.c \
    src/device/zq_device_io.c src/device/zq_device_stream.c src/device/zq_device_forward.c \
    src/device/zq_device_queue.c
#   (The access module's ZAP handler binds libzmq's fixed inproc ZAP
#   endpoint, which no client names: it is not one of the device's
#   endpoints.)
s_none "a device socket made or bound outside the library's socket helper" \
    'zsock_new \(ZMQ_(PULL|PUSH|XSUB|XPUB|ROUTER|DEALER)\)|zmq_bind \(|zsock_bind \(' \
    $(ls src/device/*.c | grep -v zq_device_access.c)
#   (The HTTP server's logger runs on libmicrohttpd's thread, not the
#   device's: its rate limit keeps the system clock.)
s_none "the device reading the system clock instead of its zq_clock" \
    'zclock_(mono|time) \(|gettimeofday \(|clock_gettime \(|time \(NULL\)' \
    $(ls src/device/*.c | grep -v zq_device_http.c)
s_none "a second copy of the envelope's layout (use zqi_envelope_t)" \
    '^\s+size_t attempt_offset;' \
    $(ls include/*.h src/*.h src/device/*.h patterns/*.h | grep -v src/zq_internal.h)
#   Library sources (not programs, not bench) stay under 900 lines each.
for file in include/*.h src/*.c src/*.h src/device/*.c src/device/*.h patterns/*.c patterns/*.h; do
    lines=$(wc -l < "$file")
    if [ "$lines" -gt 900 ]; then
        echo "FAIL: a library file over 900 lines (split it by responsibility):"
        echo "    $file: $lines lines"
        failed=1
    fi
done
if [ $failed = 0 ]; then
    echo "layers: every rule holds"
fi
exit $failed
