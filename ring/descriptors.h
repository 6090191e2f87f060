/* The e1000 legacy descriptors in C, declared once for the three compiled accelerators (ring/cbuild.py).
 *
 * Intel 8254x (e1000), 16 bytes, little endian (PCI/PCI-X Family of Gigabit Ethernet Controllers Software
 * Developer's Manual 317453-006, 3.3.3 "Legacy Transmit Descriptor Format" and 3.2.3 "Receive Descriptor
 * Format"): the same as ring/descriptors.py's TX_DESC and RX_DESC, which stay the declaration the rest of
 * the project reads.  When Python loads a compiled module, ring/compiled.py compares every field's offset
 * and size and each struct's size with the dtypes and refuses the module on any difference.  The text
 * between the cdef markers is given to cffi ahead of each module's own (ring/cbuild.py).
 */
#ifndef NIC_SANDBOX_DESCRIPTORS_H
#define NIC_SANDBOX_DESCRIPTORS_H

#include <stdint.h>

/* cdef-begin */

/* 3.3.3 Legacy transmit descriptor. */
struct tx_desc {
    uint64_t addr;    /* 63:0    buffer address */
    uint16_t length;  /* 79:64   bytes in this buffer */
    uint8_t cso;      /* 87:80   checksum offset */
    uint8_t cmd;      /* 95:88   command (EOP, IFCS, IC, RS, ...) */
    uint8_t status;   /* 99:96   status (DD) + reserved */
    uint8_t css;      /* 111:104 checksum start */
    uint16_t special; /* 127:112 VLAN tag */
};

/* 3.2.3 Receive descriptor: the device writes length..special back in one go. */
struct rx_desc {
    uint64_t addr;    /* buffer address */
    uint16_t length;  /* bytes received */
    uint16_t csum;    /* packet checksum */
    uint8_t status;   /* DD, EOP, ... */
    uint8_t errors;   /* CE, ..., RXE */
    uint16_t special; /* VLAN tag */
};

/* cdef-end */

#endif
