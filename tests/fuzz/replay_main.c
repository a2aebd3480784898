/*  =========================================================================
    replay_main - runs a fuzz target over files, as an ordinary program: each
    argument is a file or a directory of files, each file one input. A
    directory's files are replayed in the byte order of their names, so a
    failure that depends on the inputs before it comes back the same on
    every machine. Exits non-zero if an argument cannot be read or no input
    was found; an input that takes over two minutes ends the program by
    SIGALRM.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
    =========================================================================
*/
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

//  Seconds one input may take (valgrind included) before SIGALRM ends
//  the replay.
#define S_INPUT_TIMEOUT_S 120

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  scandir's order: the names' bytes (alphasort would follow the locale).
static int
s_by_name (const struct dirent **a, const struct dirent **b)
{
    return strcmp ((*a)->d_name, (*b)->d_name);
}

static int
s_replay_file (const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        perror (path);
        return -1;
    }
    uint8_t *data = NULL;
    size_t size = 0, capacity = 0;
    int byte_read;
    while ((byte_read = fgetc (file)) != EOF) {
        if (size == capacity) {
            capacity = capacity ? capacity * 2 : 4096;
            uint8_t *grown = realloc (data, capacity);
            if (!grown) {
                free (data);
                fclose (file);
                return -1;
            }
            data = grown;
        }
        data[size++] = (uint8_t)byte_read;
    }
    fclose (file);
    //  Hand the target an exactly-sized copy so overreads are caught.
    uint8_t *input = malloc (size ? size : 1);
    if (!input) {
        free (data);
        return -1;
    }
    if (size)
        memcpy (input, data, size);
    free (data);
    //  An input that hangs the target fails the replay instead of the
    //  whole test run.
    alarm (S_INPUT_TIMEOUT_S);
    LLVMFuzzerTestOneInput (input, size);
    alarm (0);
    free (input);
    return 0;
}

int
main (int argc, char *argv[])
{
    size_t replayed = 0;
    for (int arg = 1; arg < argc; arg++) {
        struct stat info;
        if (stat (argv[arg], &info) != 0) {
            perror (argv[arg]);
            return 1;
        }
        if (!S_ISDIR (info.st_mode)) {
            if (s_replay_file (argv[arg]) != 0)
                return 1;
            replayed++;
            continue;
        }
        struct dirent **entries = NULL;
        int count = scandir (argv[arg], &entries, NULL, s_by_name);
        if (count < 0) {
            perror (argv[arg]);
            return 1;
        }
        int failed = 0;
        for (int index = 0; index < count; index++) {
            const char *name = entries[index]->d_name;
            if (!failed && name[0] != '.') {
                char path[4096];
                snprintf (path, sizeof path, "%s/%s", argv[arg], name);
                failed = s_replay_file (path);
                replayed += !failed;
            }
            free (entries[index]);
        }
        free (entries);
        if (failed)
            return 1;
    }
    printf ("replayed %zu inputs\n", replayed);
    return replayed > 0 ? 0 : 1;
}
