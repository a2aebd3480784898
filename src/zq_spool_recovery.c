/*  =========================================================================
    zq_spool_recovery - opening a spool directory: listing and checking
    its segments and seals, scanning the tail and cutting a torn one,
    keeping a copy of damage, rebuilding the ack state.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include "zq_spool_internal.h"
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

//  ---- Recovery --------------------------------------------------------------

static int
s_id_compare (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

//  A segment set aside (quarantine) is NAME.zqs + S_ASIDE, or that + ".N"
//  for N from 1 to S_ASIDE_MAX when the name is taken (a copy put back,
//  say: new segments take ids past those set aside).
#define S_ASIDE     ".corrupt"
#define S_ASIDE_MAX 999

//  True if suffix (what follows NAME.zqs) is that of a segment set aside.
static bool
s_is_aside (const char *suffix)
{
    size_t length = strlen (S_ASIDE);
    if (strncmp (suffix, S_ASIDE, length))
        return false;
    suffix += length;
    if (!*suffix)
        return true;
    if (suffix[0] != '.' || suffix[1] < '1' || suffix[1] > '9')
        return false;
    char *end;
    unsigned long copy = strtoul (suffix + 1, &end, 10);
    return !*end && copy <= S_ASIDE_MAX;
}

//  Lists segment ids in the directory, oldest first, and deletes
//  leftover temporary files; *aside_p is the highest id of a segment set
//  aside (NAME.corrupt, NAME.corrupt.N), 0 if none. Returns 0 or -1 with
//  errno.
static int
s_list_segments (zq_spool_t *self, uint64_t **ids_p, size_t *count_p, uint64_t *aside_p)
{
    *aside_p = 0;
    DIR *dir = opendir (self->dir);
    if (!dir)
        return -1;
    uint64_t *ids = NULL;
    size_t count = 0, capacity = 0;
    struct dirent *entry;
    int rc = 0;
    while ((entry = readdir (dir))) {
        const char *name = entry->d_name;
        if (strlen (name) < 20 || strspn (name, "0123456789abcdef") != 16 ||
            strncmp (name + 16, ".zqs", 4))
            continue;
        if (strcmp (name + 20, ".tmp") == 0) {
            if (unlinkat (self->dir_fd, name, 0) == 0)
                zqi_log (ZQ_LOG_NOTICE, "zq_spool: %s: removed an unfinished segment", name);
            continue;
        }
        if (s_is_aside (name + 20)) {
            uint64_t id = strtoull (name, NULL, 16);
            if (id > *aside_p)
                *aside_p = id;
            continue;
        }
        if (name[20])
            continue; //  anything else: not ours to read
        if (count == capacity) {
            capacity = capacity ? capacity * 2 : 64;
            uint64_t *bigger = realloc (ids, capacity * sizeof (uint64_t));
            if (!bigger) {
                rc = zqi_fail (ENOMEM);
                break;
            }
            ids = bigger;
        }
        ids[count++] = strtoull (name, NULL, 16);
    }
    closedir (dir);
    if (rc) {
        free (ids);
        return -1;
    }
    if (count)
        qsort (ids, count, sizeof (uint64_t), s_id_compare);
    *ids_p = ids;
    *count_p = count;
    return 0;
}

static int
s_segments_push (zq_spool_t *self, zqi_segment_t *segment)
{
    if (self->segment_count == self->segment_capacity) {
        size_t capacity = self->segment_capacity ? self->segment_capacity * 2 : 16;
        zqi_segment_t **bigger = realloc (self->segments, capacity * sizeof (zqi_segment_t *));
        if (!bigger)
            return zqi_fail (ENOMEM);
        self->segments = bigger;
        self->segment_capacity = capacity;
    }
    self->segments[self->segment_count++] = segment;
    return 0;
}

//  Reads size bytes of segment at offset. Returns 0, or -1 with errno:
//  ZQ_ECORRUPT if the file ends first (it is too short: damage), else the
//  read's own (a failure of the disk is not damage: s_recovery_errno).
static int
s_read_exact (zq_spool_t *self, zqi_segment_t *segment, uint64_t offset, void *data, size_t size)
{
    ssize_t got = zqi_segment_read (self, segment, offset, data, size);
    if (got < 0)
        return -1;
    return (size_t)got == size ? 0 : zqi_fail (ZQ_ECORRUPT);
}

//  Opens a segment file and reads its header. Returns 0, or -1 with errno
//  (ZQ_ECORRUPT for a bad or short header).
static int
s_segment_open (zq_spool_t *self, zqi_segment_t *segment, bool writable)
{
    char *path = zqi_spool_segment_path (self, segment->id, "");
    if (!path)
        return -1;
    int fd = open (path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    free (path);
    if (fd < 0)
        return -1;
    if (writable)
        segment->wfd = fd;
    else
        segment->rfd = fd;
    struct stat st;
    if (fstat (fd, &st))
        return -1;
    if (!S_ISREG (st.st_mode)) //  a directory or device under a segment's name
        return zqi_fail (ZQ_ECORRUPT);
    segment->end = segment->synced = (uint64_t)st.st_size;
    uint8_t header[ZQI_SEG_HEADER_SIZE];
    if (s_read_exact (self, segment, 0, header, sizeof header))
        return -1;
    uint64_t id, salt;
    if (zqi_spool_header_parse (header, &id, &segment->first_seq, &segment->base_lsn, &salt))
        return -1;
    if (id != segment->id || (self->salt && salt != self->salt) || segment->first_seq == 0)
        return zqi_fail (ZQ_ECORRUPT);
    self->salt = salt;
    segment->last_seq = segment->first_seq - 1;
    return 0;
}

//  Checks a seal's payload against the segment it ends (first seq, the
//  seal's own offset); stores the last seq it names in *last_seq_p.
//  Returns 0, or -1 with ZQ_ECORRUPT.
static int
s_seal_parse (const uint8_t *p, const zqi_segment_t *segment, uint64_t offset, uint64_t *last_seq_p)
{
    uint64_t first_seq = zqi_load_le (p + ZQI_SEAL_AT_FIRST_SEQ, 8);
    uint64_t last_seq = zqi_load_le (p + ZQI_SEAL_AT_LAST_SEQ, 8);
    if (first_seq != segment->first_seq || last_seq + 1 < first_seq ||
        zqi_load_le (p + ZQI_SEAL_AT_COUNT, 8) != last_seq + 1 - first_seq ||
        zqi_load_le (p + ZQI_SEAL_AT_OFFSET, 8) != offset)
        return zqi_fail (ZQ_ECORRUPT);
    *last_seq_p = last_seq;
    return 0;
}

//  A sealed segment is trusted by its seal, the last 64 bytes of the file;
//  its records are checked when they are read.
static int
s_segment_check_seal (zq_spool_t *self, zqi_segment_t *segment)
{
    if (segment->end < ZQI_SEG_HEADER_SIZE + ZQI_SEAL_SIZE)
        return zqi_fail (ZQ_ECORRUPT);
    uint8_t record[ZQI_SEAL_SIZE];
    uint64_t offset = segment->end - ZQI_SEAL_SIZE;
    if (s_read_exact (self, segment, offset, record, sizeof record))
        return -1;
    zqi_rec_t rec;
    size_t need;
    if (zqi_record_parse (record, sizeof record, self->salt, self->config.max_record_bytes, &rec,
                          &need) != 1 ||
        rec.type != ZQI_REC_SEAL || rec.length != ZQI_SEAL_PAYLOAD)
        return zqi_fail (ZQ_ECORRUPT);
    uint64_t last_seq;
    if (s_seal_parse (record + ZQI_REC_HEADER_SIZE, segment, offset, &last_seq))
        return -1;
    segment->last_seq = last_seq;
    segment->sealed = true;
    //  Readers open it again when they get there.
    close (segment->rfd);
    segment->rfd = -1;
    return 0;
}

//  The path a damaged segment goes aside to: NAME.corrupt, or the first
//  NAME.corrupt.N that does not exist, so that an earlier copy is never
//  replaced. Returns it (freed by the caller), or NULL with errno
//  (EEXIST: every name is taken).
static char *
s_aside_path (zq_spool_t *self, uint64_t id)
{
    for (int copy = 0; copy <= S_ASIDE_MAX; copy++) {
        char suffix[24];
        if (copy)
            snprintf (suffix, sizeof suffix, S_ASIDE ".%d", copy);
        else
            snprintf (suffix, sizeof suffix, S_ASIDE);
        char *path = zqi_spool_segment_path (self, id, suffix);
        if (!path)
            return NULL;
        struct stat st;
        if (lstat (path, &st) && errno == ENOENT)
            return path;
        free (path);
    }
    errno = EEXIST;
    return NULL;
}

//  Copies a damaged file aside for the operator (s_aside_path). Returns
//  the copy's path (freed by the caller), or NULL with errno.
static char *
s_keep_copy (zq_spool_t *self, zqi_segment_t *segment)
{
    char *path = s_aside_path (self, segment->id);
    int fd = path ? open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
    if (fd < 0) {
        int saved = errno;
        free (path);
        errno = saved;
        return NULL;
    }
    uint8_t chunk[65536];
    uint64_t offset = 0;
    ssize_t got;
    int rc = 0;
    while (rc == 0 && (got = zqi_segment_read (self, segment, offset, chunk, sizeof chunk)) != 0) {
        if (got < 0 || zqi_spool_write_all (fd, chunk, (size_t)got, offset))
            rc = -1;
        else
            offset += (uint64_t)got;
    }
    if (rc == 0 && fsync (fd))
        rc = -1;
    int saved = errno;
    close (fd);
    if (rc) {
        free (path);
        errno = saved;
        return NULL;
    }
    return path;
}

//  A failure that is the process's lack (descriptors, memory,
//  permission), not the disk's: the open fails with it as it is.
static bool
s_lack_of_process (int errnum)
{
    return errnum == EMFILE || errnum == ENFILE || errnum == ENOMEM || errnum == EACCES ||
           errnum == EPERM;
}

//  What a recovery question that reads the segment (answered 1 yes, 0 no)
//  answers when a read came back short or failed: 0 at the segment's end
//  (ENODATA), else -1 with the read's errno, which leaves the question
//  open: nothing may be cut on it (s_recovery_errno says what the errno
//  stands for).
static int
s_read_answer (void)
{
    return errno == ENODATA ? 0 : -1;
}

//  Is there, after offset bad, a valid record whose claim says the log
//  was synced past bad when it was appended? If so (1), the bad record
//  was durable: the log is damaged in the middle, not torn at its end.
//  0 if not, -1 if a read failed.
static int
s_damage_is_durable (zq_spool_t *self, zqi_window_t *window, zqi_segment_t *segment, uint64_t bad)
{
    uint64_t bad_lsn = segment->base_lsn + bad - ZQI_SEG_HEADER_SIZE;
    for (uint64_t offset = bad + 1; offset + ZQI_REC_HEADER_SIZE <= segment->end; offset++) {
        const uint8_t *p =
            zqi_window_get (self, window, segment, offset, ZQI_REC_HEADER_SIZE, segment->end);
        if (!p)
            return s_read_answer ();
        //  The header alone says whether a record may start here (its
        //  magic, type, and a length a record may have: random bytes that
        //  look like a header must not ask for the whole segment at once)
        //  and how long it is; its claim, whether it counts.
        zqi_rec_t rec;
        size_t need = ZQI_REC_HEADER_SIZE;
        int valid = zqi_record_parse (p, ZQI_REC_HEADER_SIZE, self->salt,
                                      self->config.max_record_bytes, &rec, &need);
        if (valid < 0 || zqi_load_le (p + ZQI_REC_AT_CLAIM, 8) <= bad_lsn ||
            offset + need > segment->end)
            continue;
        if (valid == 0) {
            p = zqi_window_get (self, window, segment, offset, need, segment->end);
            if (!p && s_read_answer ())
                return -1;
            valid = p ? zqi_record_parse (p, need, self->salt, self->config.max_record_bytes, &rec,
                                          &need)
                      : 0;
        }
        if (valid == 1)
            return 1;
    }
    return 0;
}

//  Are the bytes of segment from offset to its end all zero (1): space
//  that was prepared for records (zqi_segment_prepare), not a torn write?
//  0 if not, -1 if a read failed.
static int
s_zeros_to_end (zq_spool_t *self, zqi_window_t *window, zqi_segment_t *segment, uint64_t offset)
{
    for (uint64_t at = offset; at < segment->end;) {
        size_t size =
            segment->end - at < ZQI_ZEROS_BYTES ? (size_t)(segment->end - at) : ZQI_ZEROS_BYTES;
        const uint8_t *p = zqi_window_get (self, window, segment, at, size, segment->end);
        if (!p)
            return s_read_answer ();
        if (memcmp (p, zqi_spool_zeros, size) != 0)
            return 0;
        at += size;
    }
    return 1;
}

//  Reads every record of the newest segment: rebuilds the ack state from
//  its checkpoint and ack records, finds its last message, and cuts a
//  torn tail. Returns 0, or -1 with errno ZQ_ECORRUPT (damage before
//  records that were synced after it) or an I/O errno.
static int
s_scan_tail (zq_spool_t *self, zqi_segment_t *segment)
{
    zqi_window_t window = {NULL, 0, {NULL, 0, 0}};
    uint64_t offset = ZQI_SEG_HEADER_SIZE;
    bool have_checkpoint = false;
    bool in_checkpoint = false; //  ack records right after the checkpoint complete it
    int rc = 0;
    segment->body_start = segment->end;
    while (offset < segment->end) {
        zqi_rec_t rec;
        size_t need = ZQI_REC_HEADER_SIZE;
        int valid = 0;
        for (int attempt = 0; attempt < 2 && valid == 0; attempt++) {
            const uint8_t *p = zqi_window_get (self, &window, segment, offset, need, segment->end);
            if (!p) {
                if (errno != ENODATA) {
                    rc = -1;
                    goto done;
                }
                valid = -1;
                break;
            }
            valid =
                zqi_record_parse (p, need, self->salt, self->config.max_record_bytes, &rec, &need);
        }
        const uint8_t *payload = NULL;
        if (valid == 1) {
            payload = window.buf.data + (offset - window.offset) + ZQI_REC_HEADER_SIZE;
            //  The first record is the checkpoint, and only the first.
            if ((rec.type == ZQI_REC_CHECKPOINT) != !have_checkpoint)
                valid = -1;
            else if (rec.type == ZQI_REC_MESSAGE && rec.seq <= segment->last_seq)
                valid = -1;
            else if (rec.type == ZQI_REC_MESSAGE && segment->last_seq < segment->first_seq &&
                     rec.seq < segment->first_seq)
                valid = -1;
            //  A seal must say what the reopen will check once this
            //  segment is no longer the newest.
            else if (rec.type == ZQI_REC_SEAL) {
                uint64_t sealed_last;
                if (rec.length != ZQI_SEAL_PAYLOAD ||
                    s_seal_parse (payload, segment, offset, &sealed_last) ||
                    sealed_last != segment->last_seq)
                    valid = -1;
            }
        }
        if (valid != 1) {
            if (!have_checkpoint) {
                rc = zqi_fail (ZQ_ECORRUPT);
                goto done;
            }
            //  A read that fails here leaves the open failing with its
            //  errno: cutting on it could drop records synced after the
            //  bad one.
            int zeros = s_zeros_to_end (self, &window, segment, offset);
            int durable = zeros ? 0 : s_damage_is_durable (self, &window, segment, offset);
            if (zeros < 0 || durable < 0) {
                int errnum = errno;
                char *path = zqi_spool_segment_path (self, segment->id, "");
                zqi_log (ZQ_LOG_ERROR,
                         "zq_spool: %s: cannot read past the bad record at offset %" PRIu64 " (%s)",
                         path ? path : "segment", offset, zq_strerror (errnum));
                free (path);
                rc = zqi_fail (errnum);
                goto done;
            }
            if (zeros) {
                //  The log ends here; the writer goes on over the zeros.
                segment->prepared = segment->end;
                segment->end = segment->synced = offset;
                break;
            }
            if (durable) {
                char *path = zqi_spool_segment_path (self, segment->id, "");
                zqi_log (ZQ_LOG_ERROR,
                         "zq_spool: %s: damaged record at offset %" PRIu64
                         " before records synced after it",
                         path ? path : "segment", offset);
                free (path);
                if (!self->config.quarantine) {
                    rc = zqi_fail (ZQ_ECORRUPT);
                    goto done;
                }
                self->stats.corrupt_records++;
                char *copy = s_keep_copy (self, segment);
                if (copy)
                    zqi_log (ZQ_LOG_ERROR,
                             "zq_spool: quarantine: segment " ZQI_SEG_NAME
                             " copied to %s; records after seq %" PRIu64 " in it are lost",
                             segment->id, copy, segment->last_seq);
                else
                    zqi_log (ZQ_LOG_ERROR,
                             "zq_spool: quarantine: segment " ZQI_SEG_NAME
                             " could not be copied aside (%s); records after seq %" PRIu64
                             " in it are lost",
                             segment->id, zq_strerror (errno), segment->last_seq);
                free (copy);
            } else
                zqi_log (ZQ_LOG_NOTICE,
                         "zq_spool: segment %016" PRIx64 ": cut %" PRIu64
                         " bytes of torn tail at offset %" PRIu64,
                         segment->id, segment->end - offset, offset);
            self->stats.tail_cut_bytes += segment->end - offset;
            if (zqi_segment_truncate (self, segment, offset) || zqi_segment_sync (self, segment)) {
                rc = -1;
                goto done;
            }
            break;
        }
        uint64_t size = ZQI_REC_HEADER_SIZE + rec.length;
        //  Every record carries the last seq assigned when it was made:
        //  seqs refused at the end of the log are never assigned again.
        if (rec.seq > self->seq_hint)
            self->seq_hint = rec.seq;
        switch (rec.type) {
            case ZQI_REC_CHECKPOINT: {
                if (rec.length < ZQI_CHECKPOINT_HEAD) {
                    rc = zqi_fail (ZQ_ECORRUPT);
                    goto done;
                }
                uint64_t floor = zqi_load_le (payload + ZQI_CHECKPOINT_AT_FLOOR, 8);
                if (floor > self->ack_floor)
                    zqi_spool_ack_range (self, self->ack_floor, floor);
                if (zqi_spool_ranges_apply (self, payload + ZQI_CHECKPOINT_HEAD,
                                            rec.length - ZQI_CHECKPOINT_HEAD)) {
                    rc = -1;
                    goto done;
                }
                have_checkpoint = true;
                in_checkpoint = true;
                break;
            }
            case ZQI_REC_ACK:
                if (zqi_spool_ranges_apply (self, payload, rec.length)) {
                    rc = -1;
                    goto done;
                }
                if (!in_checkpoint)
                    segment->records++;
                break;
            case ZQI_REC_MESSAGE: {
                //  Seqs skipped between messages were refused when written:
                //  they do not exist, so they count as acked.
                uint64_t expected = segment->last_seq + 1;
                if (rec.seq > expected && zqi_spool_ack_range (self, expected, rec.seq)) {
                    rc = -1;
                    goto done;
                }
                segment->last_seq = rec.seq;
                segment->records++;
                break;
            }
            case ZQI_REC_SEAL:
                segment->sealed = true;
                break;
        }
        if (in_checkpoint && rec.type != ZQI_REC_CHECKPOINT && rec.type != ZQI_REC_ACK) {
            in_checkpoint = false;
            segment->body_start = offset;
        }
        offset += size;
        if (in_checkpoint)
            segment->body_start = offset;
        if (rec.type == ZQI_REC_SEAL && offset < segment->end) {
            zqi_log (ZQ_LOG_NOTICE, "zq_spool: segment %016" PRIx64 ": cut bytes after its seal",
                     segment->id);
            self->stats.tail_cut_bytes += segment->end - offset;
            if (zqi_segment_truncate (self, segment, offset) || zqi_segment_sync (self, segment)) {
                rc = -1;
                goto done;
            }
        }
    }
    //  Every segment begins with its checkpoint, synced before the file
    //  got its name: without it the segment is damaged.
    if (!have_checkpoint)
        rc = zqi_fail (ZQ_ECORRUPT);
done:
    zqi_buf_free (&window.buf);
    return rc;
}

//  A segment's seqs must come after those of the segment before it.
//  Returns 0, or -1 with ZQ_ECORRUPT if they overlap (logged with the
//  first seq of the one and the last of the other: a copy of a segment
//  under a later name reads as one).
static int
s_check_order (const zq_spool_t *self, const zqi_segment_t *segment)
{
    if (!self->segment_count)
        return 0;
    const zqi_segment_t *before = self->segments[self->segment_count - 1];
    if (segment->first_seq > before->last_seq)
        return 0;
    zqi_log (ZQ_LOG_ERROR,
             "zq_spool: %s/" ZQI_SEG_NAME ": its seqs (from %" PRIu64
             ") overlap those of " ZQI_SEG_NAME " (to %" PRIu64 ")",
             self->dir, segment->id, segment->first_seq, before->id, before->last_seq);
    return zqi_fail (ZQ_ECORRUPT);
}

//  The errno a segment that could not be opened or read at recovery
//  stands for: damage (ZQ_ECORRUPT, ZQ_EVERSION) as it is; a lack of the
//  process's (descriptors, memory, permission) or of the file system's
//  (ENOSPC, EDQUOT, EROFS: a cut at the torn tail writes) as it is; any
//  other failure is the disk's, EIO whatever the call said (ESTALE,
//  ETIMEDOUT...). Only damage may move a segment aside or cut it; a read
//  that fails never does (s_segment_failed).
static int
s_recovery_errno (int errnum)
{
    if (s_lack_of_process (errnum) || errnum == ZQ_ECORRUPT || errnum == ZQ_EVERSION ||
        errnum == ENOSPC || errnum == EDQUOT || errnum == EROFS)
        return errnum;
    return EIO;
}

//  A segment that failed at recovery (errnum from s_recovery_errno): one
//  that could not be read (or cut, at its torn tail) fails the open;
//  damage fails it too, unless quarantine moves the segment aside (then
//  0). Each is logged at error level, naming the segment.
static int
s_segment_failed (zq_spool_t *self, uint64_t id, int errnum)
{
    if (errnum != ZQ_ECORRUPT && errnum != ZQ_EVERSION) {
        zqi_log (ZQ_LOG_ERROR, "zq_spool: %s/" ZQI_SEG_NAME ": recovery failed (%s): not opened",
                 self->dir, id, zq_strerror (errnum));
        return zqi_fail (errnum);
    }
    self->stats.corrupt_records++;
    zqi_log (ZQ_LOG_ERROR, "zq_spool: %s/" ZQI_SEG_NAME ": %s", self->dir, id,
             errnum == ZQ_ECORRUPT ? "damaged (header, seal, checkpoint, seqs overlapping the "
                                     "segment before, or a record synced before others)"
                                   : zq_strerror (errnum));
    if (!self->config.quarantine || errnum != ZQ_ECORRUPT)
        return zqi_fail (errnum);
    char *path = zqi_spool_segment_path (self, id, "");
    char *aside = path ? s_aside_path (self, id) : NULL;
    int rc = path && aside ? rename (path, aside) : -1;
    int saved = errno;
    if (rc == 0)
        zqi_log (ZQ_LOG_ERROR, "zq_spool: quarantine: %s moved to %s; its records are lost", path,
                 aside);
    else
        zqi_log (ZQ_LOG_ERROR,
                 "zq_spool: quarantine: %s/" ZQI_SEG_NAME " could not be moved aside (%s): not "
                 "opened",
                 self->dir, id, zq_strerror (saved));
    free (path);
    free (aside);
    errno = saved;
    return rc;
}

int
zqi_spool_recover (zq_spool_t *self)
{
    uint64_t *ids = NULL;
    size_t count = 0;
    uint64_t aside = 0;
    if (s_list_segments (self, &ids, &count, &aside))
        return -1;
    int rc = 0;
    zqi_segment_t *segment = NULL;

    //  Every segment but the newest: header and seal.
    for (size_t index = 0; count && index < count - 1; index++) {
        segment = zqi_spool_segment_alloc (ids[index]);
        if (!segment) {
            rc = -1;
            goto done;
        }
        if (s_segment_open (self, segment, false) || s_segment_check_seal (self, segment) ||
            s_check_order (self, segment)) {
            int errnum = s_recovery_errno (errno);
            zqi_segment_remove (self, segment, false);
            segment = NULL;
            if (s_segment_failed (self, ids[index], errnum)) {
                rc = -1;
                goto done;
            }
            continue;
        }
        if (s_segments_push (self, segment)) {
            rc = -1;
            goto done;
        }
        segment = NULL;
    }
    //  The newest: read all of it. If it is quarantined, the one before
    //  it (sealed) is read in full instead, for its ack state.
    uint64_t tail_id = count ? ids[count - 1] : 0;
    while (tail_id) {
        segment = zqi_spool_segment_alloc (tail_id);
        if (!segment) {
            rc = -1;
            goto done;
        }
        uint64_t floor = self->ack_floor;
        if (s_segment_open (self, segment, true) || s_check_order (self, segment) ||
            s_scan_tail (self, segment)) {
            int errnum = s_recovery_errno (errno);
            zqi_segment_remove (self, segment, false);
            segment = NULL;
            if (s_segment_failed (self, tail_id, errnum)) {
                rc = -1;
                goto done;
            }
            //  Forget what the damaged segment said about acks.
            zqi_rangeset_free (&self->acked);
            self->acked_above = 0;
            self->ack_floor = floor;
            tail_id = 0;
            if (self->segment_count) {
                segment = self->segments[--self->segment_count];
                tail_id = segment->id;
                zqi_segment_close (segment);
                free (segment);
                segment = NULL;
            }
            continue;
        }
        if (s_segments_push (self, segment)) {
            rc = -1;
            goto done;
        }
        segment = NULL;
        break;
    }
    self->disk_bytes = 0;
    for (size_t i = 0; i < self->segment_count; i++) {
        zqi_segment_t *each = self->segments[i];
        zqi_segment_close_reader (each); //  the reader opens it when it gets there
        each->visible = each->end;
        self->disk_bytes += each->end;
    }
    //  A new segment takes an id past every segment listed (those moved
    //  aside now too) and every one set aside before, so that an id never
    //  comes again. Past the last id, 0: zqi_segment_create makes none.
    uint64_t highest = count && ids[count - 1] > aside ? ids[count - 1] : aside;
    self->next_segment_id = highest + 1;

done:
    if (segment)
        zqi_segment_remove (self, segment, false);
    free (ids);
    return rc;
}
