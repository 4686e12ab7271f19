"""Worker functions of the remote run control tests (tests/test_remote.py)."""

import time

from mimocorb2 import BufferIO, Importer


def chatty_source(buffer_io: BufferIO):
    """mimoCoRB2 Function: numbered events until shut down, a line of output every 100 events.

    Type
        Importer
    """
    importer = Importer(buffer_io)
    sleep = float(buffer_io.get("sleep", 0.002))
    event = importer.data_example.copy()
    print("chatty source started", flush=True)

    def gen():
        i = 0
        while True:
            event["value"] = i
            if i % 100 == 0:
                print(f"tick {i}", flush=True)
            time.sleep(sleep)
            yield event
            i += 1

    importer(gen)
