package apiserver

import (
	"context"
	"net/http"
	"strings"

	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

// Handler is an HTTP handler the API server serves at Path, behind its authentication,
// authorization (a non-resource URL), audit and request limits, as it serves /metrics.
type Handler struct {
	// Path is served exactly (not the paths below it).
	Path string
	http.Handler
	// LongRunning, when set, says a request streams: no request timeout ends it, and it does
	// not count against the in-flight limits (as a watch).
	LongRunning func(*http.Request) bool
}

// Serve adds handlers to the server chain. They sit inside the outermost server's (the
// aggregator's) handler chain, so that every filter a request passes applies to them.
func Serve(config *app.Config, handlers ...Handler) {
	if len(handlers) == 0 {
		return
	}
	gc := &config.Aggregator.GenericConfig.Config
	build := gc.BuildHandlerChainFunc
	if build == nil {
		build = genericapiserver.DefaultBuildHandlerChain
	}
	gc.BuildHandlerChainFunc = func(api http.Handler, c *genericapiserver.Config) http.Handler {
		return build(withHandlers(api, handlers, c.ShutdownInitiatedNotify()), c)
	}
	longRunning := gc.LongRunningFunc
	gc.LongRunningFunc = func(r *http.Request, info *apirequest.RequestInfo) bool {
		for _, h := range handlers {
			if h.LongRunning != nil && strings.TrimSuffix(r.URL.Path, "/") == h.Path && h.LongRunning(r) {
				return true
			}
		}
		return longRunning != nil && longRunning(r, info)
	}
}

// withHandlers sends the requests for the handlers' paths to them, the others to api. A
// long-running request ends when the server begins to shut down (so that it does not hold the
// shutdown up).
func withHandlers(api http.Handler, handlers []Handler, shutdown <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimSuffix(r.URL.Path, "/")
		for _, h := range handlers {
			if path != h.Path {
				continue
			}
			if h.LongRunning != nil && h.LongRunning(r) {
				ctx, cancel := context.WithCancel(r.Context())
				defer cancel()
				go func() {
					select {
					case <-shutdown:
						cancel()
					case <-ctx.Done():
					}
				}()
				r = r.WithContext(ctx)
			}
			h.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}
