module smtp-connector/hack/gitops-check

go 1.26

require (
	github.com/yuin/gopher-lua v1.1.2
	k8s.io/apimachinery v0.37.0
	sigs.k8s.io/cli-utils v0.37.2
)
