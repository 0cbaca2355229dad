/*
 * What the tern command takes from the network before it reaches a file system or a terminal:
 * file names from a sender, texts from a peer or the server (verdicts, close reasons, group
 * messages, group and service names), and tern send's transfer header. Pure functions (no I/O,
 * no allocation), so fuzz/fuzz_tools.c and the unit test (tests/e2e/test_peer_text.c) run them
 * on their own.
 */
#ifndef TERN_TOOLS_PEER_TEXT_H
#define TERN_TOOLS_PEER_TEXT_H

#include <stddef.h>
#include <stdint.h>

#define TOOLS_NAME_MAX 255 /* bytes in a file name from the network (XFER_MAX_NAME) */

/* Why name[0..len) may not become a file name in the receiver's directory, or NULL when it may.
 * Refused: empty, over TOOLS_NAME_MAX bytes, not UTF-8 (overlong forms and surrogates
 * included), a '/' or '\\', a leading '.' (".", "..", hidden and our own ".NAME.tern-XXXXXX"
 * temporary files), "..", a NUL or any character tools_text_escape would escape (C0 and C1
 * controls, DEL, line and paragraph separators, bidirectional overrides). */
const char *tools_name_problem(const uint8_t *name, size_t len);

/* Copies untrusted text into dst[cap] (cap >= 16) as a NUL-terminated string that is safe on a
 * terminal: printable ASCII and valid UTF-8 pass (a backslash too: texts are escaped once
 * more where they are relayed, as a verdict quoting a name); \n \r \t become "\\n" "\\r"
 * "\\t", other bytes below 0x20, DEL and bytes that are not UTF-8 become "\\xNN", and the
 * code points a terminal acts on or that reorder text (U+0080..U+009F, U+2028/2029,
 * U+200E/200F, U+061C, U+202A..U+202E, U+2066..U+2069) become "\\u{XXXX}". Output that does not
 * fit ends with "..." at a character boundary. Returns dst. */
char *tools_text_escape(char *dst, size_t cap, const uint8_t *src, size_t len);

/* tern send's header ('H' version u8, size u64 BE, name length u16 BE, name): on success 0 with
 * *size and the name (pointing into p); else -1 and *why says what is wrong (the protocol;
 * the name itself is for tools_name_problem). */
int xfer_parse_header(const uint8_t *p, size_t len, uint64_t *size, const uint8_t **name,
                      size_t *name_len, const char **why);

/* tern recv's verdict ('V' status u8, text): 0 with the status and the text (pointing into p),
 * or -1 when it is not one. */
int xfer_parse_verdict(const uint8_t *p, size_t len, int *status, const uint8_t **text,
                       size_t *text_len);

/* tern chat's input: bytes from stdin are gathered into lines of at most cap bytes (longer
 * lines are cut, the rest of them dropped); a line ends at '\n' (a '\r' before it is dropped).
 * chat_lines_feed consumes data[0..len) up to and including the first end of line and returns
 * how many bytes it consumed; *complete is 1 when a line is then ready in buf[0..*line_len)
 * (call again with the rest; reset *line_len to 0 once the line is used). */
size_t chat_lines_feed(char *buf, size_t cap, size_t *line_len, const char *data, size_t len,
                       int *complete);

#endif
