package schemas

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func renderCatalog(c *Catalog) (string, error) {
	var b strings.Builder
	for _, t := range c.Tables() {
		fmt.Fprintf(&b, "%s (dialect %s, provenance %s)\n", t.QualifiedName(), t.Dialect, t.Provenance)
		fmt.Fprintf(&b, "  key:         %s\n", strings.Join(t.Key, ", "))
		fmt.Fprintf(&b, "  rowversion:  %s\n", orNone(t.RowVersion))
		fmt.Fprintf(&b, "  modified_at: %s\n", orNone(t.ModifiedAt))
		fmt.Fprintf(&b, "  practice:    %s\n", orNone(t.Practice))
		rows := [][]string{{"column", "source type", "null", "arrow", "store", "prov", "lossy"}}
		for _, col := range t.Columns {
			m, err := Map(t.Dialect, col.Type)
			if err != nil {
				return "", err
			}
			null := "NOT NULL"
			if col.Nullable {
				null = "NULL"
			}
			rows = append(rows, []string{col.Name, col.Type.String(), null, m.Arrow.String(), m.Postgres, col.Provenance, m.Lossy})
		}
		for _, line := range strings.SplitAfter(renderTable(rows), "\n") {
			if line != "" {
				b.WriteString("  " + line)
			}
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func TestNextGenGolden(t *testing.T) {
	out, err := renderCatalog(NextGen())
	require.NoError(t, err)
	golden(t, "catalog_nextgen", out)
}

func TestNextGen(t *testing.T) {
	c, err := LoadCatalog(nextgenFiles, "catalog/nextgen")
	require.NoError(t, err, "the embedded catalog must load (NextGen panics otherwise)")
	require.NotPanics(t, func() { NextGen() })

	var names []string
	for _, tbl := range c.Tables() {
		names = append(names, tbl.QualifiedName())
		require.NoError(t, tbl.Validate())
		require.Equal(t, SQLServer, tbl.Dialect, tbl.QualifiedName())
		require.NotEmpty(t, tbl.Description, tbl.QualifiedName())
	}
	require.Equal(t, []string{
		"dbo.charges", "dbo.claims", "dbo.patient_encounter", "dbo.payer_mstr",
		"dbo.reason_code_links", "dbo.reason_code_mstr", "dbo.tran_code_mstr",
		"dbo.trans_detail", "dbo.transactions",
	}, names)
}

// TestNextGenDomainFacts checks the catalog against DOMAIN.md.
func TestNextGenDomainFacts(t *testing.T) {
	c := NextGen()
	keys := map[string][]string{
		"patient_encounter": {"enc_id"},
		"charges":           {"charge_id"},
		"claims":            {"claim_id"},
		"transactions":      {"trans_id"},
		"trans_detail":      {"trans_detail_id"},
		"reason_code_links": {"trans_id", "charge_id", "reason_code_id", "seq_nbr"},
		"payer_mstr":        {"payer_id"},
		"reason_code_mstr":  {"reason_code_id"},
		"tran_code_mstr":    {"tran_code_id"},
	}
	withPractice := map[string]bool{
		"patient_encounter": true, "charges": true, "claims": true, "transactions": true,
		"trans_detail": true, "reason_code_links": true,
	}
	businessDates := []string{"admit_date", "discharge_date", "begin_date_of_service", "end_date_of_service", "batch_date", "post_date", "cob1_recent_paid_date"}
	for _, tbl := range c.Tables() {
		t.Run(tbl.Name, func(t *testing.T) {
			require.Equal(t, keys[tbl.Name], tbl.Key, "key")
			for _, k := range tbl.Key {
				col, ok := tbl.Column(k)
				require.True(t, ok, k)
				require.False(t, col.Nullable, "key column %s is NOT NULL", k)
				if strings.HasSuffix(k, "_id") {
					require.Equal(t, "uniqueidentifier", col.Type.Name, "GUID key %s", k)
				}
			}
			if withPractice[tbl.Name] {
				require.Equal(t, "practice_id", tbl.Practice)
				col, ok := tbl.Column("practice_id")
				require.True(t, ok)
				require.Equal(t, Type{Name: "char", Length: 4}, col.Type)
				require.False(t, col.Nullable)
			} else {
				require.Empty(t, tbl.Practice)
				_, ok := tbl.Column("practice_id")
				require.False(t, ok, "master tables have no practice_id")
			}
			ct, ok := tbl.Column("create_timestamp")
			require.True(t, ok)
			require.Equal(t, "datetime", ct.Type.Name)
			if tbl.Name == "reason_code_links" {
				// The table that proves the no-HWM path.
				require.Empty(t, tbl.RowVersion)
				require.Empty(t, tbl.ModifiedAt)
				for _, col := range tbl.Columns {
					require.NotEqual(t, "rowversion", col.Type.Name, col.Name)
					require.NotEqual(t, "modify_timestamp", col.Name)
					require.NotEqual(t, "row_timestamp", col.Name)
				}
			} else {
				require.Equal(t, "row_timestamp", tbl.RowVersion)
				rv, _ := tbl.Column("row_timestamp")
				require.Equal(t, Type{Name: "rowversion"}, rv.Type)
				require.Equal(t, "modify_timestamp", tbl.ModifiedAt)
				mt, _ := tbl.Column("modify_timestamp")
				require.Equal(t, Type{Name: "datetime"}, mt.Type)
			}
			for _, col := range tbl.Columns {
				require.NotEmpty(t, col.Provenance, "column %s has a provenance tag", col.Name)
				if col.Name == "amt" || strings.HasSuffix(col.Name, "_amt") || col.Name == "unit_price" {
					require.Equal(t, Type{Name: "numeric", Precision: 19, Scale: 2}, col.Type, "amount %s", col.Name)
				}
				for _, d := range businessDates {
					if col.Name == d {
						require.Equal(t, Type{Name: "varchar", Length: 8}, col.Type, "business date %s", col.Name)
					}
				}
			}
		})
	}
}

// TestNextGenInvented pins the invented [X] names, so that adding or renaming
// one is a deliberate change.
func TestNextGenInvented(t *testing.T) {
	var invented []string
	for _, tbl := range NextGen().Tables() {
		if tbl.Provenance == ProvenanceInvented {
			invented = append(invented, tbl.QualifiedName())
		}
		for _, col := range tbl.Columns {
			if col.Provenance == ProvenanceInvented {
				invented = append(invented, tbl.QualifiedName()+"."+col.Name)
			}
		}
	}
	require.Equal(t, []string{
		"dbo.reason_code_links.seq_nbr",
		"dbo.reason_code_links.group_code",
		"dbo.reason_code_links.adj_amt",
		"dbo.reason_code_mstr",
		"dbo.reason_code_mstr.reason_code_id",
		"dbo.reason_code_mstr.code",
		"dbo.reason_code_mstr.code_type",
		"dbo.reason_code_mstr.description",
		"dbo.reason_code_mstr.denial_category",
		"dbo.trans_detail.trans_detail_id",
		"dbo.transactions.claim_id",
		"dbo.transactions.clp_status_code",
	}, invented)
}

func TestCatalogTable(t *testing.T) {
	c := NextGen()
	tests := []struct {
		name string
		in   string
		want string // qualified name, "" for not found
	}{
		{name: "qualified", in: "dbo.claims", want: "dbo.claims"},
		{name: "unqualified", in: "claims", want: "dbo.claims"},
		{name: "case-insensitive", in: "DBO.Trans_Detail", want: "dbo.trans_detail"},
		{name: "unqualified case-insensitive", in: "PAYER_MSTR", want: "dbo.payer_mstr"},
		{name: "unknown", in: "dbo.person", want: ""},
		{name: "other schema", in: "sales.claims", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := c.Table(tt.in)
			if tt.want == "" {
				require.False(t, ok)
				require.Nil(t, got)
				return
			}
			require.True(t, ok)
			require.Equal(t, tt.want, got.QualifiedName())
		})
	}
}

func TestCatalogReturnsCopies(t *testing.T) {
	c := NextGen()
	a, _ := c.Table("claims")
	a.Columns[0].Name = "changed"
	a.Key[0] = "changed"
	b, _ := c.Table("claims")
	require.Equal(t, "claim_id", b.Columns[0].Name)
	require.Equal(t, []string{"claim_id"}, b.Key)
}

func TestCatalogUnqualifiedOutsideDefaultSchema(t *testing.T) {
	tbl := testTable()
	tbl.Schema = "billing"
	c, err := NewCatalog(tbl)
	require.NoError(t, err)
	got, ok := c.Table("lines")
	require.True(t, ok)
	require.Equal(t, "billing.lines", got.QualifiedName())

	other := testTable()
	other.Schema = "archive"
	c, err = NewCatalog(tbl, other)
	require.NoError(t, err)
	_, ok = c.Table("lines")
	require.False(t, ok, "ambiguous unqualified name")
}

const goodTableYAML = `
schema: dbo
name: lines
dialect: sqlserver
key: [line_id]
columns:
  - {name: line_id, type: uniqueidentifier, nullable: false}
  - {name: amount, type: "numeric(19,2)", nullable: true}
`

func TestLoadCatalogErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error
	}{
		{
			name:  "unknown key",
			files: map[string]string{"t.yaml": goodTableYAML + "primary_key: [x]\n"},
			want:  []string{"cat/t.yaml", "field primary_key not found"},
		},
		{
			name:  "unknown column key",
			files: map[string]string{"t.yaml": strings.Replace(goodTableYAML, "nullable: true}", "nullable: true, default: 0}", 1)},
			want:  []string{"cat/t.yaml", "field default not found"},
		},
		{
			name:  "nullable missing",
			files: map[string]string{"t.yaml": strings.Replace(goodTableYAML, ", nullable: true", "", 1)},
			want:  []string{"cat/t.yaml", "column 2 (amount): nullable is required"},
		},
		{
			name:  "bad type",
			files: map[string]string{"t.yaml": strings.Replace(goodTableYAML, "numeric(19,2)", "numeric(40,2)", 1)},
			want:  []string{"cat/t.yaml", `column 2 (amount): sqlserver type "numeric(40,2)": precision 40 out of range 1..38`},
		},
		{
			name:  "bad dialect",
			files: map[string]string{"t.yaml": strings.Replace(goodTableYAML, "sqlserver", "oracle", 1)},
			want:  []string{"cat/t.yaml", `dialect: unknown dialect "oracle"`},
		},
		{
			name:  "invalid table",
			files: map[string]string{"t.yaml": strings.Replace(goodTableYAML, "key: [line_id]", "key: [nope]", 1)},
			want:  []string{"cat/t.yaml", "table dbo.lines", "key column nope does not exist"},
		},
		{
			name:  "two documents",
			files: map[string]string{"t.yaml": goodTableYAML + "---\n" + goodTableYAML},
			want:  []string{"cat/t.yaml", "more than one YAML document"},
		},
		{
			name:  "duplicate table",
			files: map[string]string{"a.yaml": goodTableYAML, "b.yml": goodTableYAML},
			want:  []string{"table dbo.lines defined twice"},
		},
		{
			name: "every broken file reported",
			files: map[string]string{
				"a.yaml": goodTableYAML + "bogus: 1\n",
				"b.yaml": strings.Replace(goodTableYAML, "uniqueidentifier", "nosuchtype", 1),
			},
			want: []string{"cat/a.yaml", "cat/b.yaml"},
		},
		{
			name:  "no table files",
			files: map[string]string{"README.md": "not a table"},
			want:  []string{"catalog directory cat has no table files"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for name, body := range tt.files {
				fsys["cat/"+name] = &fstest.MapFile{Data: []byte(body)}
			}
			_, err := LoadCatalog(fsys, "cat")
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestLoadCatalog(t *testing.T) {
	fsys := fstest.MapFS{
		"cat/lines.yaml": &fstest.MapFile{Data: []byte(goodTableYAML)},
		"cat/notes.txt":  &fstest.MapFile{Data: []byte("ignored")},
	}
	c, err := LoadCatalog(fsys, "cat")
	require.NoError(t, err)
	tbl, ok := c.Table("lines")
	require.True(t, ok)
	require.Equal(t, []Column{
		{Name: "line_id", Type: Type{Name: "uniqueidentifier"}},
		{Name: "amount", Type: Type{Name: "numeric", Precision: 19, Scale: 2}, Nullable: true},
	}, tbl.Columns)
}
