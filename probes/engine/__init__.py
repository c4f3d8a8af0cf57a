"""The stream engine and its socket helpers: N emulated calls from one process
(``core``), its per-run record (``run``) and the analysis of a run
(``analysis``), batched UDP I/O (``mmsg``) and the socket options the engine
and the reflector share (``sockopts``)."""
