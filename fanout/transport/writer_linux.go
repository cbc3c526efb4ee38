package transport

const tcpUserTimeout = 0x12 // TCP_USER_TIMEOUT
