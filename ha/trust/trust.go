// Package trust is device trust for the device group (F5: device trust, the
// device certificates every BIG-IP in a trust domain exchanges): who is a
// member of the group, proven by keys, on every HA channel.
//
// A trust directory holds:
//
//	ca.pem            the group's certificate authority (every device)
//	ca-key.pem        its private key (only where devices are added; keep it offline)
//	heartbeat.key     the group's heartbeat MAC key, 32 random bytes, hex (every device)
//	DEVICE.pem        this device's certificate, signed by the CA, CN = DEVICE
//	DEVICE-key.pem    its private key
//
// Heartbeats (UDP) carry an HMAC-SHA256 (truncated to 16 bytes) under a key
// derived per sending device from heartbeat.key: a datagram that does not
// verify as coming from the device it names is refused. Streams (config
// sync, mirroring) use mutual TLS 1.3 with the device certificates: each
// side must present a certificate signed by the group's CA whose name is a
// device of the configured group.
//
// Files are written 0600 (keys) and 0644 (certificates); a key file that is
// readable by group or others is refused on load.
package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Validity of what Init and Issue make.
const (
	CAValidity     = 20 * 365 * 24 * time.Hour
	DeviceValidity = 10 * 365 * 24 * time.Hour
	MACSize        = 16 // bytes of HMAC-SHA256 appended to a heartbeat
	heartbeatKeyN  = 32
)

// File names in a trust directory.
const (
	CAFile           = "ca.pem"
	CAKeyFile        = "ca-key.pem"
	HeartbeatKeyFile = "heartbeat.key"
)

// CertFile and KeyFile name a device's certificate and key.
func CertFile(device string) string { return device + ".pem" }

// KeyFile names a device's private key file.
func KeyFile(device string) string { return device + "-key.pem" }

// validName is what a device name may be: it becomes a file name and a
// certificate common name.
func validName(device string) error {
	if device == "" || len(device) > 64 {
		return fmt.Errorf("device name %q: 1-64 characters", device)
	}
	for _, r := range device {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') || device[0] == '.' {
			return fmt.Errorf("device name %q: letters, digits, '-', '_' and '.' only, not starting with '.'", device)
		}
	}
	return nil
}

// Init makes a new trust domain in dir (created if missing): a CA, the
// heartbeat key, and the certificate of device. It refuses to overwrite any
// existing file.
func Init(dir, device string) error {
	if err := validName(device); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []string{CAFile, CAKeyFile, HeartbeatKeyFile, CertFile(device), KeyFile(device)} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s exists: refusing to overwrite a trust domain (remove the directory to start over)", filepath.Join(dir, f))
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Fulcrum device group CA", Organization: []string{"Fulcrum"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	hb := make([]byte, heartbeatKeyN)
	if _, err := rand.Read(hb); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, CAKeyFile), "PRIVATE KEY", pkcs8(caKey), 0o600); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, CAFile), "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(dir, HeartbeatKeyFile), []byte(hex.EncodeToString(hb)+"\n"), 0o600); err != nil {
		return err
	}
	return Issue(dir, device, dir)
}

// Issue makes device's certificate and key with the CA in caDir and writes,
// into out (created if missing), everything that device needs: ca.pem,
// heartbeat.key, DEVICE.pem and DEVICE-key.pem — never the CA key. It
// refuses to overwrite a device certificate.
func Issue(caDir, device, out string) error {
	if err := validName(device); err != nil {
		return err
	}
	caCert, err := readCert(filepath.Join(caDir, CAFile))
	if err != nil {
		return err
	}
	caKey, err := readKey(filepath.Join(caDir, CAKeyFile))
	if err != nil {
		return fmt.Errorf("%w (issuing needs the CA key, on the device where `device-trust init` ran)", err)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	for _, f := range []string{CertFile(device), KeyFile(device)} {
		if _, err := os.Stat(filepath.Join(out, f)); err == nil {
			return fmt.Errorf("%s exists: refusing to overwrite a device certificate", filepath.Join(out, f))
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: device, Organization: []string{"Fulcrum"}},
		DNSNames:     []string{device},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(DeviceValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(out, KeyFile(device)), "PRIVATE KEY", pkcs8(key), 0o600); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(out, CertFile(device)), "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	if filepath.Clean(out) == filepath.Clean(caDir) {
		return nil
	}
	for _, f := range []struct {
		name string
		mode fs.FileMode
	}{{CAFile, 0o644}, {HeartbeatKeyFile, 0o600}} {
		b, err := os.ReadFile(filepath.Join(caDir, f.name))
		if err != nil {
			return err
		}
		if err := copyIfSame(filepath.Join(out, f.name), b, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// copyIfSame writes b to path unless path already holds b; a different
// existing file is an error (another trust domain).
func copyIfSame(path string, b []byte, mode fs.FileMode) error {
	old, err := os.ReadFile(path)
	if err == nil {
		if string(old) == string(b) {
			return nil
		}
		return fmt.Errorf("%s exists and belongs to another trust domain", path)
	}
	return writeNew(path, b, mode)
}

// Store is a loaded trust directory for one local device and a known set of
// peers.
type Store struct {
	local   string
	devices []string // the device group, sorted, including local
	ca      *x509.Certificate
	pool    *x509.CertPool
	cert    tls.Certificate
	macKeys map[string][]byte // device -> heartbeat MAC key
	group   []byte            // heartbeat.key: the secret every device of the group holds
}

// Load reads dir for device local in a group of devices (local included or
// not). Every problem is an error naming the file.
func Load(dir, local string, devices []string) (*Store, error) {
	if err := validName(local); err != nil {
		return nil, err
	}
	ca, err := readCert(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, err
	}
	if !ca.IsCA {
		return nil, fmt.Errorf("%s: not a CA certificate", filepath.Join(dir, CAFile))
	}
	hbPath := filepath.Join(dir, HeartbeatKeyFile)
	if err := privateFile(hbPath); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(hbPath)
	if err != nil {
		return nil, err
	}
	hb, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(hb) < 16 {
		return nil, fmt.Errorf("%s: want at least 16 bytes as hex (make it with `fulcrum device-trust init`)", hbPath)
	}
	keyPath := filepath.Join(dir, KeyFile(local))
	if err := privateFile(keyPath); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile(local)), keyPath)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", local, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	leaf := cert.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%s: not signed by this trust domain's CA (%s): %w", filepath.Join(dir, CertFile(local)), filepath.Join(dir, CAFile), err)
	}
	if leaf.Subject.CommonName != local {
		return nil, fmt.Errorf("%s: issued to %q, not %q", filepath.Join(dir, CertFile(local)), leaf.Subject.CommonName, local)
	}
	s := &Store{local: local, ca: ca, pool: pool, cert: cert, macKeys: map[string][]byte{}, group: hb}
	s.devices = append(s.devices, devices...)
	if !slices.Contains(s.devices, local) {
		s.devices = append(s.devices, local)
	}
	slices.Sort(s.devices)
	for _, d := range s.devices {
		s.macKeys[d] = macKey(hb, d)
	}
	return s, nil
}

// macKey derives a device's heartbeat key: HMAC-SHA256(group key, label).
func macKey(group []byte, device string) []byte {
	m := hmac.New(sha256.New, group)
	m.Write([]byte("fulcrum ha heartbeat v1\x00" + device))
	return m.Sum(nil)
}

// Secret derives a 32-byte secret for purpose from the group's key: the
// same on every device of the group, unknown outside it (e.g. the default
// cookie_insert secret, so cookies work on whichever device serves).
func (s *Store) Secret(purpose string) []byte {
	m := hmac.New(sha256.New, s.group)
	m.Write([]byte("fulcrum group secret v1\x00" + purpose))
	return m.Sum(nil)
}

// Seal appends this device's MAC to msg (ha.Authenticator).
func (s *Store) Seal(msg []byte) []byte {
	return append(msg, mac(s.macKeys[s.local], msg)...)
}

// Open checks that msg ends in sender's MAC and returns what precedes it
// (ha.Authenticator). An unknown sender never verifies.
func (s *Store) Open(sender string, msg []byte) ([]byte, bool) {
	k, ok := s.macKeys[sender]
	if !ok || len(msg) < MACSize {
		return nil, false
	}
	body, sum := msg[:len(msg)-MACSize], msg[len(msg)-MACSize:]
	return body, hmac.Equal(sum, mac(k, body))
}

func mac(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)[:MACSize]
}

// ServerTLS is the configuration for accepting an HA stream: TLS 1.3,
// this device's certificate, and a client certificate required from a
// device of the group.
func (s *Store) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{s.cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        s.pool,
		VerifyConnection: s.verifyPeer(""),
	}
}

// ClientTLS is the configuration for opening an HA stream to peer: the
// peer must present peer's certificate from this trust domain.
func (s *Store) ClientTLS(peer string) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{s.cert},
		RootCAs:          s.pool,
		ServerName:       peer,
		VerifyConnection: s.verifyPeer(peer),
	}
}

// ErrUnknownDevice is returned (wrapped) by a handshake with a certificate
// of the trust domain that names no device of the group.
var ErrUnknownDevice = errors.New("not a device of this device group")

// verifyPeer checks, after the chain verified, that the peer is a device of
// the group (and the expected one when want is set).
func (s *Store) verifyPeer(want string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("device trust: peer sent no certificate")
		}
		name := cs.PeerCertificates[0].Subject.CommonName
		if !slices.Contains(s.devices, name) {
			return fmt.Errorf("device trust: certificate of %q: %w", name, ErrUnknownDevice)
		}
		if want != "" && name != want {
			return fmt.Errorf("device trust: expected device %q, peer is %q", want, name)
		}
		return nil
	}
}

// PeerDevice is the device name of an established HA stream's peer.
func PeerDevice(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func pkcs8(k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // a freshly generated P-256 key always marshals
	}
	return b
}

func writePEM(path, typ string, der []byte, mode fs.FileMode) error {
	return writeNew(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// writeNew creates path with mode; it fails if path exists.
func writeNew(path string, b []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// privateFile refuses a key file others can read.
func privateFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s: mode %v, a key file must not be readable by group or others (chmod 600)", path, st.Mode().Perm())
	}
	return nil
}

func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%s: no PEM %s block", path, typ)
	}
	return blk.Bytes, nil
}

func readCert(path string) (*x509.Certificate, error) {
	der, err := readPEM(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	if err := privateFile(path); err != nil {
		return nil, err
	}
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA key", path)
	}
	return ek, nil
}

// Info describes a trust directory for `fulcrum device-trust show`.
type Info struct {
	Dir          string     `json:"dir"`
	CA           CertInfo   `json:"ca"`
	HasCAKey     bool       `json:"has_ca_key"`
	HeartbeatKey string     `json:"heartbeat_key_id"` // first 8 bytes of SHA-256 of the key, hex: compare across devices
	Devices      []CertInfo `json:"devices"`
	Problems     []string   `json:"problems,omitempty"`
}

// CertInfo is one certificate's summary.
type CertInfo struct {
	Name        string    `json:"name"`
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"sha256"`
}

// Inspect summarises dir; problems with individual files are listed, not
// fatal, so the operator sees everything at once.
func Inspect(dir string) (*Info, error) {
	ca, err := readCert(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, err
	}
	in := &Info{Dir: dir, CA: certInfo(ca)}
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		in.HasCAKey = true
	}
	if raw, err := os.ReadFile(filepath.Join(dir, HeartbeatKeyFile)); err != nil {
		in.Problems = append(in.Problems, err.Error())
	} else {
		sum := sha256.Sum256([]byte(strings.TrimSpace(string(raw))))
		in.HeartbeatKey = hex.EncodeToString(sum[:8])
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".pem") || strings.HasSuffix(n, "-key.pem") || n == CAFile {
			continue
		}
		c, err := readCert(filepath.Join(dir, n))
		if err != nil {
			in.Problems = append(in.Problems, err.Error())
			continue
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			in.Problems = append(in.Problems, fmt.Sprintf("%s: not valid under this CA: %v", n, err))
		}
		in.Devices = append(in.Devices, certInfo(c))
	}
	return in, nil
}

func certInfo(c *x509.Certificate) CertInfo {
	sum := sha256.Sum256(c.Raw)
	return CertInfo{Name: c.Subject.CommonName, NotAfter: c.NotAfter, Fingerprint: hex.EncodeToString(sum[:])}
}
