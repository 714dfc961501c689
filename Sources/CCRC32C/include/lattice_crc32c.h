#ifndef LATTICE_CRC32C_H
#define LATTICE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has the CRC-32C instruction `lattice_crc32c_hw` uses (SSE 4.2 on x86-64,
/// the CRC extension on AArch64), else 0.
int lattice_crc32c_hw_available(void);

/// Extends the CRC-32C register `state` (the inverted checksum, as the table-driven loop keeps
/// it) over `count` bytes with the CPU's instruction. Only call it when available.
uint32_t lattice_crc32c_hw(uint32_t state, const void *bytes, size_t count);

#endif
