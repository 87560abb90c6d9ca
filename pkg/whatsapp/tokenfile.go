package whatsapp

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// LoadLocalTokens reads the local token map: a JSON object from reference to
// token, given inline (SENDER_TOKENS) or as a file (SENDER_TOKENS_FILE). Both
// may be empty; both given is an error, since which one wins would surprise.
// Errors never quote the content.
func LoadLocalTokens(inline, file string) (map[string]Token, error) {
	if inline != "" && file != "" {
		return nil, errors.New("tokens: set either the inline token map or the token file, not both")
	}
	data := []byte(inline)
	if file != "" {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			return nil, fmt.Errorf("tokens: %w", err)
		}
	}
	tokens := map[string]Token{}
	if len(data) == 0 {
		return tokens, nil
	}
	var raw map[string]string
	if err := json.Unmarshal(data, &raw); err != nil {
		// The JSON error may quote part of the input, which holds tokens.
		return nil, errors.New("tokens: the token map is not a JSON object of strings")
	}
	for ref, tok := range raw {
		tokens[ref] = NewToken(tok)
	}
	return tokens, nil
}
