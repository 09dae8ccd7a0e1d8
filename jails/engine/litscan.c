/* The literal prefilter's scan in one pass (jails/engine/litscan.py loads it).
 *
 * Which lines of a buffer hold which of several literals: for each line that holds
 * at least one, its start offset and the OR of the holding literals' bits. The same
 * result as literals._scan_masks (one str.find pass per literal), in one pass over
 * the bytes: each position is looked up by its first two bytes in a table of the
 * literals starting with them, and only those are compared.
 *
 * Plain C, no Python headers: called through ctypes. Built by scripts/build-native.sh.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* buf, len: the text (one byte per character); lits: the literals one after the
 * other, offs[i]..offs[i+1] the bytes of literal i (each at least 2 bytes, no
 * newline); bits[i] its pattern bits. Writes up to cap (start, mask) pairs and
 * returns how many, or -1 if cap is too small or memory is short. */
long ips_scan_masks(const unsigned char *buf, long len, const unsigned char *lits, const int32_t *offs,
                    const uint64_t *bits, int32_t nlits, int64_t *starts, uint64_t *masks, long cap)
{
    int32_t *head = malloc(sizeof(int32_t) * 65536);
    int32_t *next = malloc(sizeof(int32_t) * (nlits > 0 ? nlits : 1));
    if (head == NULL || next == NULL) {
        free(head);
        free(next);
        return -1;
    }
    for (long k = 0; k < 65536; k++)
        head[k] = -1;
    for (int32_t i = nlits - 1; i >= 0; i--) {
        const unsigned char *lit = lits + offs[i];
        int key = lit[0] | (lit[1] << 8);
        next[i] = head[key];
        head[key] = i;
    }
    long count = 0, line = 0;
    uint64_t mask = 0;
    for (long i = 0; i < len; i++) {
        unsigned char c = buf[i];
        if (c == '\n') {
            if (mask) {
                if (count >= cap)
                    goto full;
                starts[count] = line;
                masks[count++] = mask;
                mask = 0;
            }
            line = i + 1;
            continue;
        }
        if (i + 1 >= len)
            break;
        for (int32_t k = head[c | (buf[i + 1] << 8)]; k >= 0; k = next[k]) {
            long size = offs[k + 1] - offs[k];
            if (size <= len - i && memcmp(buf + i, lits + offs[k], (size_t)size) == 0)
                mask |= bits[k];
        }
    }
    if (mask) {
        if (count >= cap)
            goto full;
        starts[count] = line;
        masks[count++] = mask;
    }
    free(head);
    free(next);
    return count;
full:
    free(head);
    free(next);
    return -1;
}
