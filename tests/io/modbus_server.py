#!/usr/bin/python3
"""An independent Modbus TCP server for tend's PLC tests: Debian's pymodbus (not libmodbus).

Serves coils, discrete inputs, holding and input registers at addresses 0..SIZE-1 (zero-based on
the wire); anything beyond is answered with exception 0x02 (illegal data address). Every value a
client writes is appended to --log as one JSON line {"t": unix_s, "table": "co"|"hr", "addr": a,
"values": [...]}, flushed at once, so a test can see pulses and counter values in order.

Lines on stdin change the data as a PLC program would: "set di 3 1", "set hr 100 42".
"""
import argparse
import asyncio
import json
import sys
import threading
import time

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.server import StartAsyncTcpServer


class LoggedBlock(ModbusSequentialDataBlock):
    def __init__(self, table, size, log):
        super().__init__(0, [0] * size)
        self.table = table
        self.log = log
        self.lock = threading.Lock()

    def setValues(self, address, values):  # noqa: N802 (pymodbus' name)
        if not isinstance(values, list):
            values = [values]
        with self.lock:
            super().setValues(address, values)
        if self.log is not None:
            line = {"t": time.time(), "table": self.table, "addr": address,
                    "values": [int(v) for v in values]}
            self.log.write(json.dumps(line) + "\n")
            self.log.flush()


def read_commands(blocks):
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 4 and parts[0] == "set" and parts[1] in blocks:
            block = blocks[parts[1]]
            with block.lock:
                ModbusSequentialDataBlock.setValues(block, int(parts[2]), [int(parts[3])])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--size", type=int, default=1000)
    args = ap.parse_args()
    log = open(args.log, "a", encoding="utf-8")
    blocks = {t: LoggedBlock(t, args.size, log if t in ("co", "hr") else None)
              for t in ("co", "di", "hr", "ir")}
    store = ModbusSlaveContext(di=blocks["di"], co=blocks["co"], hr=blocks["hr"],
                               ir=blocks["ir"], zero_mode=True)
    context = ModbusServerContext(slaves=store, single=True)
    threading.Thread(target=read_commands, args=(blocks,), daemon=True).start()
    # Reuse the address: a test restarts the server on the same port right after killing it.
    asyncio.run(StartAsyncTcpServer(context=context, address=("127.0.0.1", args.port),
                                    allow_reuse_address=True))


if __name__ == "__main__":
    main()
