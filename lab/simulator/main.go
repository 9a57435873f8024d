// Command snapsim is snapkeeper's lab vCenter: govmomi's simulator package with an inventory built from a
// resolved lab spec (see src/lab/spec.ts), VMFS datastores laid on file-system array volumes, and RDM disks
// injected from this side because the simulator cannot add them through ReconfigVM_Task.
//
// It serves SOAP on loopback until SIGTERM or SIGINT. When the whole inventory is built it writes the
// --ready-file atomically; the TypeScript lab manager waits for that file.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
)

type delayFlags map[string]int

func (d delayFlags) String() string { return fmt.Sprint(map[string]int(d)) }

func (d delayFlags) Set(v string) error {
	i := strings.IndexByte(v, '=')
	if i <= 0 {
		return fmt.Errorf("expected Method=ms, got %q", v)
	}
	ms, err := strconv.Atoi(v[i+1:])
	if err != nil || ms < 0 {
		return fmt.Errorf("expected Method=ms with ms a non-negative integer, got %q", v)
	}
	d[v[:i]] = ms
	return nil
}

type readyDisk struct {
	Index  int    `json:"index"`
	Path   string `json:"path"`
	SizeMB int64  `json:"sizeMB"`
	Kind   string `json:"kind"`
}

type readyVM struct {
	Name  string      `json:"name"`
	ID    string      `json:"id"`
	Disks []readyDisk `json:"disks"`
}

type readyInfo struct {
	URL        string    `json:"url"`
	Thumbprint string    `json:"thumbprint,omitempty"`
	PID        int       `json:"pid"`
	VMs        []readyVM `json:"vms"`
}

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	delays := delayFlags{}
	specFile := flag.String("spec", "", "resolved lab spec (JSON)")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	useTLS := flag.Bool("tls", false, "serve HTTPS with a fresh self-signed certificate")
	user := flag.String("user", "", "the only user name login accepts")
	passwordFile := flag.String("password-file", "", "file holding the only password login accepts")
	idle := flag.Int("session-idle-timeout", 0, "seconds after which idle sessions expire (0: never)")
	readyFile := flag.String("ready-file", "", "written (atomically) once the inventory is built")
	flag.Var(delays, "delay", "Method=ms delay for one SOAP method (repeatable)")
	flag.Parse()

	if err := run(*specFile, *listen, *useTLS, *user, *passwordFile, *idle, *readyFile, delays); err != nil {
		log.Printf("snapsim: %v", err)
		os.Exit(1)
	}
}

func run(specFile, listen string, useTLS bool, user, passwordFile string, idle int, readyFile string, delays delayFlags) error {
	if specFile == "" || user == "" || passwordFile == "" || readyFile == "" {
		return fmt.Errorf("--spec, --user, --password-file and --ready-file are required")
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen must be a loopback address, got %q", listen)
	}
	pw, err := ioutil.ReadFile(passwordFile)
	if err != nil {
		return fmt.Errorf("reading the password file: %v", err)
	}
	password := strings.TrimRight(string(pw), "\r\n")
	if password == "" {
		return fmt.Errorf("the password file is empty")
	}
	spec, err := loadSpec(specFile)
	if err != nil {
		return err
	}

	// An empty vCenter: every entity comes from the spec.
	model := simulator.VPX()
	model.Datacenter = 0
	model.Portgroup = 0
	model.Host = 0
	model.Cluster = 0
	model.ClusterHost = 0
	model.Datastore = 0
	model.Machine = 0
	model.Autostart = false
	if err := model.Create(); err != nil {
		return fmt.Errorf("creating the simulator: %v", err)
	}
	ctx := context.Background()
	client, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		return fmt.Errorf("in-process client: %v", err)
	}

	started := time.Now()
	b := &builder{ctx: ctx, client: client, rdm: newRDMRegistry(), tools: newToolsRegistry()}
	vms, err := b.build(spec)
	if err != nil {
		return err
	}
	log.Printf("inventory built: %d VMs in %s", len(vms), time.Since(started).Round(time.Millisecond))

	// Delays apply to clients only, so they are switched on after the build (the service holds a pointer).
	model.DelayConfig.MethodDelay = map[string]int(delays)
	if idle > 0 {
		simulator.SessionIdleTimeout = time.Duration(idle) * time.Second
	}

	model.Service.Listen = &url.URL{Host: listen, User: url.UserPassword(user, password)}
	var thumbprint string
	if useTLS {
		cert, fp, err := selfSignedCert()
		if err != nil {
			return err
		}
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		thumbprint = fp
	}
	server := model.Service.NewServer()
	// The guard strips injected RDM disks around the few calls whose simulator code assumes flat backings.
	// Set before the ready file exists, so no client can have connected yet.
	// The datastore guard makes datastore removal behave as vCenter's (datastores.go).
	// The tools guard fails a quiesced snapshot of a VM whose Tools do not run, as vCenter does (tools.go).
	server.Config.Handler = datastoreRemovalGuard(b.tools.guard(b.rdm.guard(server.Config.Handler)))

	u := *server.URL
	u.User = nil
	info := readyInfo{URL: u.String(), Thumbprint: thumbprint, PID: os.Getpid(), VMs: vms}
	if err := writeJSONAtomic(readyFile, info); err != nil {
		server.Close()
		return err
	}
	log.Printf("serving %s", info.URL)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	log.Printf("received %s, stopping", s)
	server.Close()
	return nil
}

// selfSignedCert makes a fresh certificate for 127.0.0.1/localhost and returns its SHA-256 fingerprint
// (upper-case hex, colon separated) so clients can pin it instead of trusting a CA.
func selfSignedCert() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "snapkeeper-lab", Organization: []string{"snapkeeper lab"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, c := range sum {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, strings.Join(parts, ":"), nil
}

func writeJSONAtomic(file string, v interface{}) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+".tmp")
	if err := ioutil.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}
