// Package etcd runs the cluster's storage: an etcd server embedded in the wasmkube process, with
// its data under the profile's data directory and its clients served on a unix socket in a
// private directory only (no TCP port, no peer listener), or a check that external etcd servers
// named by a profile answer.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// DefaultReadyTimeout bounds how long Start waits for the embedded etcd to serve.
const DefaultReadyTimeout = 30 * time.Second

// TickMs and ElectionMs are the embedded member's raft heartbeat interval and election timeout,
// in milliseconds: the shortest etcd accepts (an election timeout of at least 5 ticks), so that
// a start waits 10-50 ms for the member to elect itself rather than etcd's 100-1000 ms.
const (
	TickMs     = 10
	ElectionMs = 5 * TickMs
)

// Config describes an embedded etcd server.
type Config struct {
	// DataDir holds the member's data (created 0700).
	DataDir string
	// LogFile receives etcd's own log at warning level and above. Empty: discarded.
	LogFile string
	// Socket is the unix socket clients connect to (required). Its directory is created 0700 if
	// missing and must belong to the user running etcd; group and other permissions are removed.
	Socket string
	// ReadyTimeout bounds start-up; DefaultReadyTimeout when zero.
	ReadyTimeout time.Duration
	// UnsafeNoFsync acknowledges writes without syncing them to disk (etcd's --unsafe-no-fsync,
	// as envtest runs etcd): they reach the kernel only, so a killed process loses nothing,
	// but a machine crash or power loss may lose recent writes or corrupt the data.
	UnsafeNoFsync bool
	// Mark, when set, hears when the server was created ("etcd started": data loaded, socket
	// open) and when it serves ("etcd ready": a leader elected, the member published).
	Mark func(phase, detail string)
}

// Server is a running embedded etcd.
type Server struct {
	etcd      *embed.Etcd
	endpoints []string
	logger    *zap.Logger
	closeLog  func()
}

// Start starts an embedded etcd that serves clients on the unix socket cfg.Socket only (mode
// 0600, in a 0700 directory of the user's) and has no peer listener, and waits until it serves or
// ctx, the timeout or a start-up failure ends the wait.
//
// # Notes
//
//   - Only one server may use a data directory: a second one blocks on bbolt's file lock
//     forever. Callers hold their own lock first (wasmkube.Up locks the profile's data dir).
//   - A socket file left by a killed process is replaced.
//   - The member's advertised peer URL stays http://127.0.0.1:0, as data dirs written before
//     the socket recorded it; nothing listens there.
//   - On failure everything started is closed before Start returns.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.Socket == "" {
		return nil, errors.New("start embedded etcd: no client socket path")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create etcd data dir: %w", err)
	}
	if err := PrivateDir(filepath.Dir(cfg.Socket)); err != nil {
		return nil, fmt.Errorf("etcd socket: %w", err)
	}
	logger, closeLog, err := newLogger(cfg.LogFile)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			closeLog()
		}
	}()

	e, err := embed.StartEtcd(embedConfig(cfg, logger))
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.DataDir, err)
	}
	mark := cfg.Mark
	if mark == nil {
		mark = func(string, string) {}
	}
	mark("etcd started", "")
	if err := waitReady(ctx, e, cfg); err != nil {
		e.Close()
		return nil, err
	}
	// The directory already keeps other users out; the socket's own mode says so too.
	if err := os.Chmod(cfg.Socket, 0o600); err != nil {
		e.Close()
		return nil, fmt.Errorf("etcd socket: %w", err)
	}
	mark("etcd ready", "")
	return &Server{etcd: e, endpoints: []string{Endpoint(cfg.Socket)}, logger: logger, closeLog: closeLog}, nil
}

// embedConfig is the embedded etcd's configuration: one member named wasmkube, clients on the
// unix socket only, no peer listener.
func embedConfig(cfg Config, logger *zap.Logger) *embed.Config {
	ec := embed.NewConfig()
	ec.Name = "wasmkube"
	ec.Dir = cfg.DataDir
	socket := url.URL{Scheme: "unix", Path: cfg.Socket}
	ec.ListenClientUrls = []url.URL{socket}
	ec.AdvertiseClientUrls = []url.URL{socket}
	// A single member needs no peer listener: raft messages go nowhere. The advertised peer URL
	// is only recorded in the member list.
	ec.ListenPeerUrls = nil
	ec.AdvertisePeerUrls = []url.URL{{Scheme: "http", Host: "127.0.0.1:0"}}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger)
	// The apiserver compacts etcd itself every 5 minutes; no gateway or metrics listener is needed.
	ec.EnableGRPCGateway = false
	// A single member elects itself after 1 to ElectionMs/TickMs ticks (etcd advances all but
	// one tick of the election timeout at start): 100-1000 ms with etcd's defaults (100/1000),
	// 10-50 ms with these. There are no peers whose heartbeats could be late.
	ec.TickMs, ec.ElectionMs = TickMs, ElectionMs
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	return ec
}

// waitReady waits until e serves, or says why it does not: a start-up failure, a stop, the
// timeout or ctx. The caller closes e on error.
func waitReady(ctx context.Context, e *embed.Etcd, cfg Config) error {
	timer := time.NewTimer(cfg.ReadyTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("embedded etcd failed while starting: %w", err)
	case <-e.Server.StopNotify():
		return errors.New("embedded etcd stopped while starting; see its log for the cause")
	case <-timer.C:
		return fmt.Errorf("embedded etcd not ready after %s (data dir %s)", cfg.ReadyTimeout, cfg.DataDir)
	case <-ctx.Done():
		return fmt.Errorf("start embedded etcd: %w", ctx.Err())
	}
}

// Endpoint is the client URL of a unix socket as etcd's client (kube-apiserver's --etcd-servers
// included) reads it: "unix://" and the absolute path, not escaped.
func Endpoint(socket string) string { return "unix://" + socket }

// PrivateDir creates dir (0700) if missing and makes sure only its owner can enter it: it must
// belong to the effective user; group and other permissions are removed.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if owner, ok := fileOwner(fi); ok && owner != os.Geteuid() {
		return fmt.Errorf("%s belongs to user %d, not to you (%d): remove it, or choose a data dir whose path is shorter", dir, owner, os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("make %s private: %w", dir, err)
		}
	}
	return nil
}

// fileOwner returns the uid owning fi where the platform says.
func fileOwner(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// Endpoints are the client URLs of the server.
func (s *Server) Endpoints() []string { return s.endpoints }

// Err reports a fatal error of the running server.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the server and waits until its data is flushed.
func (s *Server) Close() {
	s.etcd.Close()
	s.closeLog()
}

func newLogger(path string) (*zap.Logger, func(), error) {
	if path == "" {
		return zap.NewNop(), func() {}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("create etcd log dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open etcd log: %w", err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(f), zapcore.WarnLevel)
	return zap.New(core), func() { _ = f.Close() }, nil
}

// External describes etcd servers that wasmkube does not run.
type External struct {
	Servers []string
	// TLS secures the connection; nil for plain http.
	TLS *tls.Config
}

// CheckReachable asks each external server for its status within timeout and returns an error
// that names the servers and what to check when none answers.
func CheckReachable(ctx context.Context, ext External, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A server that takes no TCP connection is reported without starting gRPC, whose retries
	// would log a warning per attempt to the terminal (its logger is klog's, process-wide).
	if err := dialAny(ctx, ext.Servers); err != nil {
		return fmt.Errorf("no external etcd server answered (%w); check that etcd runs and that etcd.external.servers in the profile is right, or remove etcd.external to use the embedded etcd", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   ext.Servers,
		TLS:         ext.TLS,
		DialTimeout: timeout,
		Logger:      zap.NewNop(),
		Context:     ctx,
	})
	if err != nil {
		return fmt.Errorf("connect to external etcd %v: %w", ext.Servers, err)
	}
	defer cli.Close()
	err = anyServer(ext.Servers, func(ep string) error {
		if _, err := cli.Status(ctx, ep); err != nil {
			return fmt.Errorf("%s: %w", ep, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("no external etcd server answered within %s (%w); check that etcd runs and that etcd.external.servers, caFile, certFile and keyFile in the profile are right, or remove etcd.external to use the embedded etcd",
			timeout, err)
	}
	return nil
}

// anyServer runs try for every server at once, so that a member that is down or drops packets
// does not use up the time of the others, and returns nil as soon as one succeeds, else every
// server's error. The calls still running are left to their context.
func anyServer(servers []string, try func(server string) error) error {
	results := make(chan error, len(servers))
	for _, server := range servers {
		go func() { results <- try(server) }()
	}
	var errs []error
	for range servers {
		err := <-results
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// dialAny returns nil as soon as one of servers (http(s):// or unix:// URLs) takes a
// connection, else why none did.
func dialAny(ctx context.Context, servers []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return anyServer(servers, func(server string) error { return dialServer(ctx, server) })
}

// dialServer opens and closes one connection to the etcd server at the URL server.
func dialServer(ctx context.Context, server string) error {
	u, err := url.Parse(server)
	if err != nil {
		return fmt.Errorf("%s: not a URL: %w", server, err)
	}
	network, address := "tcp", u.Host
	if u.Scheme == "unix" || u.Scheme == "unixs" {
		network, address = "unix", u.Host+u.Path
	}
	if address == "" {
		return fmt.Errorf("%s: no host or socket path in the URL", server)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return fmt.Errorf("%s: %w", server, err)
	}
	return conn.Close()
}
