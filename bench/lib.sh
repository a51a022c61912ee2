# Helpers the bench scripts share; sourced, not run.

# A loopback port nothing listens on now (the OS picks it; a teammate's broker on a fixed port
# like 19092 is never taken).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
