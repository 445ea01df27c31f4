module goworld-py/tests/kcp_peer

go 1.21

require github.com/xtaci/kcp-go/v5 v5.4.19
