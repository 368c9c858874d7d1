"""The parts of the ``files`` connector kind, one job each (the reader is ``files_source``)."""
