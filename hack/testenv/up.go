package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// component is one child process of the control plane.
type component struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

func runUp(args []string) int {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	dir := fs.String("dir", "", "state directory: etcd data, certificates, logs, kubeconfig (required)")
	port := fs.Int("port", 0, "kube-apiserver port (0 picks a free one)")
	withParent := fs.Bool("stop-with-parent", false, "stop when the process that started up exits (for test runners)")
	forNode := fs.Bool("node", false, "serve a node (hack/node): ServiceAccount admission and the controllers pods need")
	address := fs.String("address", "127.0.0.1", "kube-apiserver's address (for a node: one its pods reach, such as the node's own on lo)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "up: --dir is required")
		return 2
	}
	if net.ParseIP(*address) == nil {
		fmt.Fprintf(os.Stderr, "up: --address %q is not an IP address\n", *address)
		return 2
	}
	if err := up(*dir, *address, *port, *withParent, *forNode); err != nil {
		fmt.Fprintf(os.Stderr, "up: %v\n", err)
		return 1
	}
	return 0
}

func up(dir, address string, port int, withParent, forNode bool) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// A stale kubeconfig would point callers at a dead server: it is written
	// only once the API server is ready.
	kubeconfig := filepath.Join(dir, "kubeconfig")
	_ = os.Remove(kubeconfig)
	started := time.Now()
	certs := pki{dir: filepath.Join(dir, "pki"), address: address}
	if err := certs.generate(); err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}
	if port == 0 {
		if port, err = freePortOn(address); err != nil {
			return err
		}
	}
	etcdClient, err := freePort()
	if err != nil {
		return err
	}
	etcdPeer, err := freePort()
	if err != nil {
		return err
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	if withParent {
		go watchParent(signals)
	}
	var running []*component
	stopAll := func() {
		for i := len(running) - 1; i >= 0; i-- {
			running[i].stop(15 * time.Second)
		}
	}
	defer stopAll()

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	etcd, err := start(dir, "etcd",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-url", etcdURL,
		"--listen-peer-url", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer))
	if err != nil {
		return err
	}
	running = append(running, etcd)
	if err := waitFor(etcd, signals, func() bool { return httpOK(http.DefaultClient, etcdURL+"/health") }); err != nil {
		return err
	}

	server := "https://" + net.JoinHostPort(address, strconv.Itoa(port))
	apiserverArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--cert-dir=" + filepath.Join(dir, "pki"),
		"--tls-cert-file=" + certs.path("apiserver.crt"),
		"--tls-private-key-file=" + certs.path("apiserver.key"),
		"--client-ca-file=" + certs.path("ca.crt"),
		"--secure-port=" + strconv.Itoa(port),
		"--bind-address=" + address,
		"--advertise-address=" + address,
		// Room for 4,094 Services: bench:operator --huge makes two per domain for 200 domains.
		"--service-cluster-ip-range=10.0.0.0/20",
		"--allow-privileged=true",
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + certs.path("sa.pub"),
		"--service-account-signing-key-file=" + certs.path("sa.key"),
		"--v=0",
	}
	// The endpoint reconciler refuses a loopback address. A node's kube-proxy
	// needs the kubernetes Service's endpoints (pods reach the API server
	// there); without a node nothing does.
	if ip := net.ParseIP(address); forNode && !ip.IsLoopback() {
		apiserverArgs = append(apiserverArgs, "--endpoint-reconciler-type=lease")
	} else {
		apiserverArgs = append(apiserverArgs, "--endpoint-reconciler-type=none")
	}
	if !forNode {
		// No pods run without a node, and no ServiceAccount controller makes the
		// default ServiceAccounts this plugin would insist on; TokenRequest still
		// issues tokens. With a node, pods get their ServiceAccount's token
		// volume from this plugin, as on any cluster.
		apiserverArgs = append(apiserverArgs, "--disable-admission-plugins=ServiceAccount")
	}
	apiserver, err := start(dir, "kube-apiserver", apiserverArgs...)
	if err != nil {
		return err
	}
	running = append(running, apiserver)
	client, err := adminClient(certs)
	if err != nil {
		return err
	}
	if err := waitFor(apiserver, signals, func() bool { return httpOK(client, server+"/readyz") }); err != nil {
		return err
	}
	if err := writeAdminKubeconfig(kubeconfig, server, certs); err != nil {
		return err
	}

	kcm, err := start(dir, "kube-controller-manager",
		"--kubeconfig="+kubeconfig,
		"--controllers="+controllers(forNode),
		"--secure-port=0",
		"--leader-elect=false",
		"--v=0")
	if err != nil {
		return err
	}
	running = append(running, kcm)

	ready, _ := json.Marshal(map[string]any{
		"event":      "ready",
		"server":     server,
		"kubeconfig": kubeconfig,
		"seconds":    time.Since(started).Seconds(),
	})
	fmt.Println(string(ready))

	// Fault injection for the faults tier: SIGUSR1 kills kube-apiserver
	// (SIGKILL) and starts it again on the same port and etcd; SIGUSR2 first
	// compacts etcd to its current revision, so every resourceVersion a client
	// holds has expired and its next watch gets 410 Gone.
	restarts := make(chan os.Signal, 1)
	signal.Notify(restarts, syscall.SIGUSR1, syscall.SIGUSR2)
	exits := make(chan *component, len(running)+16)
	watch := func(c *component) {
		go func() {
			err := <-c.done
			c.done <- err // keep it for stop()
			exits <- c
		}()
	}
	for _, c := range running {
		watch(c)
	}
	for {
		select {
		case <-signals:
			stopAll()
			running = nil
			return nil
		case sig := <-restarts:
			restartStarted := time.Now()
			if sig == syscall.SIGUSR2 {
				if err := compactEtcd(etcdURL); err != nil {
					return fmt.Errorf("compacting etcd: %w", err)
				}
			}
			old := apiserver
			apiserver = nil
			_ = old.cmd.Process.Kill()
			err := <-old.done
			old.done <- err
			if apiserver, err = start(dir, "kube-apiserver", apiserverArgs...); err != nil {
				return err
			}
			running[1] = apiserver
			if err := waitFor(apiserver, signals, func() bool { return httpOK(client, server+"/readyz") }); err != nil {
				return err
			}
			watch(apiserver)
			event, _ := json.Marshal(map[string]any{"event": "apiserver-restarted", "compacted": sig == syscall.SIGUSR2, "seconds": time.Since(restartStarted).Seconds()})
			fmt.Println(string(event))
		case c := <-exits:
			if c.name == "kube-apiserver" && c != apiserver {
				continue // the one a restart replaced
			}
			err := <-c.done
			c.done <- err
			return fmt.Errorf("%s exited: %v (see %s)", c.name, err, c.logPath(dir))
		}
	}
}

// controllers are the kube-controller-manager controllers up runs. A node's
// pods also need their Deployments' ReplicaSets and Pods, the node's not-ready
// taint lifted once it is Ready, a default ServiceAccount in every namespace and
// the kube-root-ca.crt ConfigMap their token volumes project.
func controllers(forNode bool) string {
	list := "garbage-collector-controller,namespace-controller,endpointslice-controller"
	if forNode {
		list += ",deployment-controller,replicaset-controller,node-lifecycle-controller,serviceaccount-controller,root-ca-certificate-publisher-controller"
	}
	return list
}

// compactEtcd compacts etcd's history up to its current revision through
// etcd's JSON gateway.
func compactEtcd(etcdURL string) error {
	post := func(path string, body string) (map[string]any, error) {
		resp, err := http.Post(etcdURL+path, "application/json", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: HTTP %d %v", path, resp.StatusCode, out)
		}
		return out, nil
	}
	// Any range request answers with the store's current revision in its header.
	status, err := post("/v3/kv/range", `{"key":"AA==","limit":1}`)
	if err != nil {
		return err
	}
	header, _ := status["header"].(map[string]any)
	revision, _ := header["revision"].(string)
	if revision == "" {
		return fmt.Errorf("no revision in etcd's answer %v", status)
	}
	_, err = post("/v3/kv/compaction", fmt.Sprintf(`{"revision":%q,"physical":true}`, revision))
	return err
}

func start(dir, name string, args ...string) (*component, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &component{name: name, done: make(chan error, 1)}
	log, err := os.OpenFile(c.logPath(dir), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	c.cmd = exec.Command(self, append([]string{name}, args...)...)
	c.cmd.Stdout = log
	c.cmd.Stderr = log
	// If up itself is killed, the kernel takes its children down with it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		c.done <- c.cmd.Wait()
		log.Close()
	}()
	return c, nil
}

func (c *component) logPath(dir string) string { return filepath.Join(dir, c.name+".log") }

func (c *component) stop(grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// waitFor polls ready until it holds, the component dies, a signal arrives or
// two minutes pass.
func waitFor(c *component, signals chan os.Signal, ready func() bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for !ready() {
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("%s exited before it was ready: %v", c.name, err)
		case sig := <-signals:
			return fmt.Errorf("interrupted by %v while waiting for %s", sig, c.name)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 2 minutes", c.name)
		}
	}
	return nil
}

func httpOK(client *http.Client, url string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func adminClient(certs pki) (*http.Client, error) {
	pair, err := tls.LoadX509KeyPair(certs.path("admin.crt"), certs.path("admin.key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(certs.path("ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS12,
	}}}, nil
}

func freePort() (int, error) { return freePortOn("127.0.0.1") }

func freePortOn(address string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(address, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// watchParent turns the death of the parent process into a SIGTERM, so a test
// runner that is killed outright does not leave a control plane behind.
func watchParent(signals chan<- os.Signal) {
	parent := os.Getppid()
	for os.Getppid() == parent {
		time.Sleep(500 * time.Millisecond)
	}
	signals <- syscall.SIGTERM
}
