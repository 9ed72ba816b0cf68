package h1

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

// browserRequest is a typical ~500-byte navigation request from a browser.
const browserRequest = "GET /products/widgets/index.html?color=blue&size=m HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"Connection: keep-alive\r\n" +
	"Upgrade-Insecure-Requests: 1\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n" +
	"Referer: https://www.example.com/products/\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Accept-Language: en-GB,en;q=0.9\r\n" +
	"Cookie: session=3f2a9c1e7b; theme=dark\r\n" +
	"\r\n"

func BenchmarkReadRequest(b *testing.B) {
	rd := strings.NewReader(browserRequest)
	br := bufio.NewReader(rd)
	b.SetBytes(int64(len(browserRequest)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(browserRequest)
		br.Reset(rd)
		if _, err := ReadRequest(br, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteHead(b *testing.B) {
	r, err := ReadRequest(bufio.NewReader(strings.NewReader(browserRequest)), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriter(io.Discard)
	b.SetBytes(int64(len(browserRequest)))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.WriteHead(bw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCopyChunked(b *testing.B) {
	var in bytes.Buffer
	chunk := strings.Repeat("x", 8192)
	for range 16 {
		in.WriteString("2000\r\n" + chunk + "\r\n")
	}
	in.WriteString("0\r\n\r\n")
	data := in.Bytes()
	rd := bytes.NewReader(data)
	br := bufio.NewReader(rd)
	bw := bufio.NewWriter(io.Discard)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(data)
		br.Reset(rd)
		if _, err := CopyBody(bw, br, Framing{Chunked: true}); err != nil {
			b.Fatal(err)
		}
	}
}
