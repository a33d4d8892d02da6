package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func writeAdminKubeconfig(path, server string, certs pki) error {
	ca, err := os.ReadFile(certs.path("ca.crt"))
	if err != nil {
		return err
	}
	crt, err := os.ReadFile(certs.path("admin.crt"))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(certs.path("admin.key"))
	if err != nil {
		return err
	}
	return writeKubeconfig(path, server, ca, "testenv-admin", &clientcmdapi.AuthInfo{
		ClientCertificateData: crt,
		ClientKeyData:         key,
	}, "default")
}

func writeKubeconfig(path, server string, ca []byte, user string, auth *clientcmdapi.AuthInfo, namespace string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[user] = auth
	cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: user, Namespace: namespace}
	cfg.CurrentContext = "testenv"
	// Write to a temporary name and rename, so a reader never sees half a file.
	tmp := path + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// runSAKubeconfig mints a kubeconfig that authenticates as a ServiceAccount,
// through the TokenRequest API, so a program can be run with exactly the RBAC
// a chart grants it.
func runSAKubeconfig(args []string) int {
	fs := flag.NewFlagSet("sa-kubeconfig", flag.ContinueOnError)
	admin := fs.String("kubeconfig", "", "admin kubeconfig (required)")
	namespace := fs.String("namespace", "", "ServiceAccount namespace (required)")
	name := fs.String("serviceaccount", "", "ServiceAccount name (required)")
	out := fs.String("out", "", "kubeconfig to write (required)")
	create := fs.Bool("create", false, "create the ServiceAccount when it does not exist")
	ttl := fs.Duration("duration", 24*time.Hour, "token lifetime")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *admin == "" || *namespace == "" || *name == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "sa-kubeconfig: --kubeconfig, --namespace, --serviceaccount and --out are required")
		return 2
	}
	if err := saKubeconfig(*admin, *namespace, *name, *out, *create, *ttl); err != nil {
		fmt.Fprintf(os.Stderr, "sa-kubeconfig: %v\n", err)
		return 1
	}
	return 0
}

func saKubeconfig(admin, namespace, name, out string, create bool, ttl time.Duration) error {
	rest, err := clientcmd.BuildConfigFromFlags("", admin)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if create {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
		_, err := client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	seconds := int64(ttl.Seconds())
	token, err := client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	user := fmt.Sprintf("system:serviceaccount:%s:%s", namespace, name)
	return writeKubeconfig(out, rest.Host, rest.CAData, user, &clientcmdapi.AuthInfo{Token: token.Status.Token}, namespace)
}
