package stack

// PID is the process id of the named program while it runs, 0 when it is
// not running; load harnesses read its CPU time and memory from /proc.
func (s *Stack) PID(name string) int {
	p := s.process(name)
	if p == nil || p.cmd == nil || p.cmd.Process == nil || p.done == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}
