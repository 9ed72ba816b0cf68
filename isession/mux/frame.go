package mux

import (
	"encoding/binary"
	"fmt"
)

const headerLen = 9

// Frame types.
const (
	typeData   = 0
	typeOpen   = 1
	typeWindow = 2
	typeRst    = 3
	typePing   = 4
	typeGoAway = 5
	typeResync = 6
	numTypes   = 7
)

// Flags.
const (
	flagFIN = 0x1 // DATA, OPEN: the sender's last data on this stream
	flagENC = 0x2 // DATA, OPEN: the data is encoded by the PayloadEncoder
	flagACK = 0x1 // PING: a reply
)

// Reset codes (RST, GOAWAY).
const (
	CodeNormal       uint32 = 0 // no error
	CodeCancel       uint32 = 1 // the application reset the stream
	CodeRefused      uint32 = 2 // too many streams, accept backlog full, or going away
	CodeOptimization uint32 = 3 // a payload of the stream failed to decode
	CodeProtocol     uint32 = 4 // the peer broke the protocol on this stream
	CodeClosed       uint32 = 5 // closed with data unread
)

const maxReason = 256

// header is one frame header.
type header struct {
	length int
	typ    uint8
	flags  uint8
	stream uint32
}

func parseHeader(b []byte) header {
	return header{
		length: int(b[0])<<16 | int(b[1])<<8 | int(b[2]),
		typ:    b[3],
		flags:  b[4],
		stream: binary.BigEndian.Uint32(b[5:9]),
	}
}

// appendHeader appends a frame header with the given length.
func appendHeader(b []byte, typ, flags uint8, stream uint32, length int) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), typ, flags,
		byte(stream>>24), byte(stream>>16), byte(stream>>8), byte(stream))
}

// putLength sets the length of the frame whose header starts at b[0].
func putLength(b []byte, length int) {
	b[0], b[1], b[2] = byte(length>>16), byte(length>>8), byte(length)
}

// appendWindow appends a WINDOW frame.
func appendWindow(b []byte, stream uint32, inc uint32) []byte {
	b = appendHeader(b, typeWindow, 0, stream, 4)
	return binary.BigEndian.AppendUint32(b, inc)
}

// appendCoded appends a RST or GOAWAY frame.
func appendCoded(b []byte, typ uint8, stream uint32, code uint32, reason string) []byte {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	b = appendHeader(b, typ, 0, stream, 4+len(reason))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, reason...)
}

// ResetError is what a stream's Read or Write returns once the stream was
// reset, by the peer (Remote) or locally.
type ResetError struct {
	Code   uint32
	Reason string
	Remote bool
}

func (e *ResetError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by peer"
	}
	if e.Reason != "" {
		return fmt.Sprintf("mux: stream reset %s (code %d: %s)", who, e.Code, e.Reason)
	}
	return fmt.Sprintf("mux: stream reset %s (code %d)", who, e.Code)
}
