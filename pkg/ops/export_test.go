package ops

// NewAPIWithLimits is NewAPI with limits small enough to reach in a test.
func NewAPIWithLimits(addr string, limits Limits) (*Server, error) {
	return newServer(addr, limits, false)
}
