package lbsp

// legacyHeader returns the seed's literal encoding as research/packet_anchors
// §2.2 reconstructs it: Next Header 6, Hdr Ext Len 4, "option" type 1 with
// length 4, the client fd00:1::1 and an all-zero server, then PadN(2).
func legacyHeader() []byte {
	h := []byte{6, 4, 0x01, 0x04}
	client := [16]byte{0xfd, 0x00, 0x00, 0x01, 15: 0x01}
	h = append(h, client[:]...)
	h = append(h, make([]byte, 16)...)
	return append(h, 0x01, 0x02, 0x00, 0x00)
}
