package synth

// Reference data: payers, adjustment reason codes, transaction codes and
// services. Master rows are seeded once (day 0); their GUIDs derive from the
// seed like every other key.

// payerClass is a financial class (DOMAIN.md §5 payer mix).
type payerClass int

const (
	classCommercial payerClass = iota
	classMedicare
	classMedicareAdvantage
	classMedicaid
	classSelfPay
	classOther
	classSupplement // secondary only (Medigap)
	numClasses
)

type classInfo struct {
	name string
	// share of encounters (percent); supplements are only secondary.
	share float64
	// allowed/charge ratio range.
	allowLo, allowHi float64
	// initial claim denial probability.
	denial float64
	// ERA delay after the date of service, in days.
	eraLo, eraHi int
}

var classes = [numClasses]classInfo{
	classCommercial:        {name: "Commercial", share: 45, allowLo: 0.45, allowHi: 0.70, denial: 0.105, eraLo: 14, eraHi: 35},
	classMedicare:          {name: "Medicare", share: 17, allowLo: 0.35, allowHi: 0.50, denial: 0.07, eraLo: 14, eraHi: 24},
	classMedicareAdvantage: {name: "Medicare Advantage", share: 12, allowLo: 0.38, allowHi: 0.55, denial: 0.12, eraLo: 14, eraHi: 35},
	classMedicaid:          {name: "Medicaid", share: 16, allowLo: 0.25, allowHi: 0.40, denial: 0.13, eraLo: 18, eraHi: 45},
	classSelfPay:           {name: "Self-pay", share: 6},
	classOther:             {name: "Other", share: 4, allowLo: 0.50, allowHi: 0.80, denial: 0.18, eraLo: 20, eraHi: 45},
	classSupplement:        {name: "Medicare Supplement", allowLo: 1, allowHi: 1, denial: 0.02, eraLo: 10, eraHi: 25},
}

// payerDef is one payer_mstr row; within a class, payers are listed in Zipf
// rank order.
type payerDef struct {
	class   payerClass
	name    string
	plan    string
	insType string // X12 claim filing indicator
}

var payerDefs = []payerDef{
	{classCommercial, "Blue Cross Blue Shield", "PPO", "BL"},
	{classCommercial, "UnitedHealthcare", "Choice Plus", "CI"},
	{classCommercial, "Aetna", "Open Access", "CI"},
	{classCommercial, "Cigna", "OAP", "CI"},
	{classCommercial, "Humana", "Commercial PPO", "CI"},
	{classCommercial, "Anthem", "Blue Access", "BL"},
	{classCommercial, "Oscar Health", "EPO", "CI"},
	{classCommercial, "Ambetter", "Marketplace", "CI"},
	{classCommercial, "Harvard Pilgrim", "HMO", "HM"},
	{classCommercial, "Meritain Health", "Self-funded", "CI"},
	{classMedicare, "Medicare Part B", "Novitas JL", "MB"},
	{classMedicare, "Railroad Medicare", "Palmetto GBA", "MB"},
	{classMedicareAdvantage, "Humana Medicare Advantage", "Gold Plus HMO", "16"},
	{classMedicareAdvantage, "UnitedHealthcare Medicare", "AARP Medicare Advantage", "16"},
	{classMedicareAdvantage, "Aetna Medicare", "Medicare Eagle PPO", "16"},
	{classMedicareAdvantage, "Wellcare", "Value Script", "16"},
	{classMedicareAdvantage, "BCBS Medicare Advantage", "Medicare Blue PPO", "16"},
	{classMedicaid, "State Medicaid", "Fee for service", "MC"},
	{classMedicaid, "Molina Healthcare", "Medicaid MCO", "MC"},
	{classMedicaid, "Amerigroup", "Medicaid MCO", "MC"},
	{classMedicaid, "UHC Community Plan", "Medicaid MCO", "MC"},
	{classMedicaid, "CareSource", "Medicaid MCO", "MC"},
	{classOther, "Tricare East", "Prime", "CH"},
	{classOther, "Travelers Workers Comp", "Workers compensation", "WC"},
	{classOther, "Liberty Mutual WC", "Workers compensation", "WC"},
	{classOther, "State Farm Auto", "Auto medical", "AM"},
	{classOther, "VA Community Care", "Community Care Network", "VA"},
	{classSupplement, "AARP Medicare Supplement", "Plan G", "CI"},
	{classSupplement, "Mutual of Omaha Medigap", "Plan N", "CI"},
}

// Denial categories (reason_code_mstr.denial_category), DOMAIN.md §4.
const (
	catEligibility   = "eligibility/registration"
	catMissingInfo   = "missing information"
	catCoding        = "coding/bundling"
	catAuthorization = "authorization/referral"
	catNecessity     = "non-covered/medical necessity"
	catDuplicate     = "duplicate"
	catCOB           = "coordination of benefits"
	catTimely        = "timely filing"
	catCredentialing = "provider/credentialing"
)

// denialCategory is one category with its default weight, its CARCs, the
// RARCs that go with them, how the practice works it and how often that
// eventually gets the line paid.
type denialCategory struct {
	name    string
	weight  float64
	carcs   []string
	group   string // CAS group code
	rarcs   []string
	rarcReq bool // every line carries one of rarcs
	appeal  bool // worked by appeal (else by rebill)
	success float64
}

var denialCategories = []denialCategory{
	{name: catEligibility, weight: 25, carcs: []string{"27", "26", "31", "32", "109", "140"}, group: "CO", rarcs: []string{"N30"}, success: 0.68},
	{name: catMissingInfo, weight: 18, carcs: []string{"16"}, group: "CO", rarcs: []string{"N290", "M51", "MA130"}, rarcReq: true, success: 0.75},
	{name: catCoding, weight: 15, carcs: []string{"4", "5", "11", "97", "181", "236"}, group: "CO", rarcs: []string{"M80", "N20"}, success: 0.66},
	{name: catAuthorization, weight: 12, carcs: []string{"15", "39", "197", "198", "288"}, group: "CO", rarcs: []string{"N54"}, appeal: true, success: 0.55},
	{name: catNecessity, weight: 12, carcs: []string{"50", "55", "96", "151", "167", "204"}, group: "CO", rarcs: []string{"N130"}, appeal: true, success: 0.5},
	{name: catDuplicate, weight: 6, carcs: []string{"18"}, group: "OA", success: 0.3},
	{name: catCOB, weight: 5, carcs: []string{"22"}, group: "CO", rarcs: []string{"MA04", "N4"}, success: 0.7},
	{name: catTimely, weight: 4, carcs: []string{"29"}, group: "CO", rarcs: []string{"N211"}, appeal: true, success: 0.35},
	{name: catCredentialing, weight: 3, carcs: []string{"185", "B7"}, group: "CO", rarcs: []string{"N290"}, appeal: true, success: 0.6},
}

var denialWeights = func() weighted {
	ws := make([]float64, len(denialCategories))
	for i, c := range denialCategories {
		ws[i] = c.weight
	}
	return newWeighted(ws...)
}()

// reasonDef is one reason_code_mstr row.
type reasonDef struct {
	code     string
	codeType string // C: CARC, R: RARC
	desc     string
	category string // denial category, "" when not a denial reason
}

// reasonDefs lists every CARC and RARC the generator uses, the non-denial
// adjustments first.
var reasonDefs = func() []reasonDef {
	defs := []reasonDef{
		{code: "1", codeType: "C", desc: "Deductible Amount"},
		{code: "2", codeType: "C", desc: "Coinsurance Amount"},
		{code: "3", codeType: "C", desc: "Co-payment Amount"},
		{code: "23", codeType: "C", desc: "The impact of prior payer(s) adjudication including payments and/or adjustments"},
		{code: "45", codeType: "C", desc: "Charge exceeds fee schedule/maximum allowable or contracted/legislated fee arrangement"},
	}
	for _, c := range denialCategories {
		for _, code := range c.carcs {
			defs = append(defs, reasonDef{code: code, codeType: "C", desc: carcText[code], category: c.name})
		}
	}
	for _, code := range []string{"N30", "N290", "M51", "MA130", "M80", "N20", "N54", "N130", "MA04", "N4", "N211"} {
		defs = append(defs, reasonDef{code: code, codeType: "R", desc: rarcText[code]})
	}
	return defs
}()

var carcText = map[string]string{
	"27":  "Expenses incurred after coverage terminated",
	"26":  "Expenses incurred prior to coverage",
	"31":  "Patient cannot be identified as our insured",
	"32":  "Our records indicate the patient is not an eligible dependent",
	"109": "Claim/service not covered by this payer/contractor. You must send the claim/service to the correct payer/contractor",
	"140": "Patient/Insured health identification number and name do not match",
	"16":  "Claim/service lacks information or has submission/billing error(s)",
	"4":   "The procedure code is inconsistent with the modifier used, or a required modifier is missing",
	"5":   "The procedure code/type of bill is inconsistent with the place of service",
	"11":  "The diagnosis is inconsistent with the procedure",
	"97":  "The benefit for this service is included in the payment/allowance for another service/procedure that has already been adjudicated",
	"181": "Procedure code was invalid on the date of service",
	"236": "This procedure or procedure/modifier combination is not compatible with another procedure or procedure/modifier combination provided on the same day",
	"15":  "The authorization number is missing, invalid, or does not apply to the billed services or provider",
	"39":  "Services denied at the time authorization/pre-certification was requested",
	"197": "Precertification/notification/authorization/pre-treatment absent",
	"198": "Precertification/notification/authorization/pre-treatment exceeded",
	"288": "Referral absent",
	"50":  "These are non-covered services because this is not deemed a 'medical necessity' by the payer",
	"55":  "Procedure/treatment/drug is deemed experimental/investigational by the payer",
	"96":  "Non-covered charge(s)",
	"151": "Payment adjusted because the payer deems the information submitted does not support this many/frequency of services",
	"167": "This (these) diagnosis(es) is (are) not covered",
	"204": "This service/equipment/drug is not covered under the patient's current benefit plan",
	"18":  "Exact duplicate claim/service",
	"22":  "This care may be covered by another payer per coordination of benefits",
	"29":  "The time limit for filing has expired",
	"185": "The rendering provider is not eligible to perform the service billed",
	"B7":  "This provider was not certified/eligible to be paid for this procedure/service on this date of service",
}

var rarcText = map[string]string{
	"N30":   "Patient ineligible for this service",
	"N290":  "Missing/incomplete/invalid rendering provider primary identifier",
	"M51":   "Missing/incomplete/invalid procedure code(s)",
	"MA130": "Your claim contains incomplete and/or invalid information, and no appeal rights are afforded because the claim is unprocessable",
	"M80":   "Not covered when performed during the same session/date as a previously processed service for the patient",
	"N20":   "Service not payable with other service rendered on the same date",
	"N54":   "Claim information is inconsistent with pre-certified/authorized services",
	"N130":  "Consult plan benefit documents/guidelines for information about restrictions for this service",
	"MA04":  "Secondary payment cannot be considered without the identity of or payment information from the primary payer",
	"N4":    "Missing/Incomplete/Invalid prior Insurance Carrier(s) EOB",
	"N211":  "Alert: You may not appeal this decision",
}

// tranCode is one tran_code_mstr row.
type tranCode int

const (
	tcInsPayment tranCode = iota
	tcPatPayment
	tcContractual
	tcDenialWriteOff
	tcSmallBalance
	tcTakeback
	tcTransfer
	numTranCodes
)

var tranCodeDefs = [numTranCodes]struct {
	typ, source string
	desc        string
	sign        int64
}{
	tcInsPayment:     {"C", "I", "Insurance payment", -1},
	tcPatPayment:     {"C", "P", "Patient payment", -1},
	tcContractual:    {"A", "I", "Contractual adjustment", -1},
	tcDenialWriteOff: {"A", "I", "Denial write-off", -1},
	tcSmallBalance:   {"A", "P", "Small balance write-off", -1},
	tcTakeback:       {"R", "I", "Insurance recoupment (take-back)", 1},
	tcTransfer:       {"A", "I", "Transfer to patient responsibility", 0},
}

// serviceKind is a kind of charge line with its billed-amount distribution.
type serviceKind int

const (
	svcEM serviceKind = iota
	svcLab
	svcProcedure
	svcDrug
)

var serviceKinds = [...]struct {
	median, sigma, cap float64
	codes              []string
}{
	svcEM:        {median: 175, sigma: 0.35, cap: 900, codes: []string{"99213", "99214", "99203", "99204", "99212", "99215", "99202", "99205", "99395", "99396"}},
	svcLab:       {median: 35, sigma: 0.6, cap: 600, codes: []string{"85025", "80053", "80061", "83036", "84443", "81002", "87880", "82947", "36415", "80048"}},
	svcProcedure: {median: 350, sigma: 0.7, cap: 9000, codes: []string{"20610", "11102", "17110", "93000", "12001", "69210", "11721", "45378", "29881", "64483"}},
	svcDrug:      {median: 120, sigma: 1.05, cap: 5000, codes: []string{"J1100", "J3301", "J0696", "J1885", "J2001", "J1030", "J0585", "J9035", "J1745", "J0897"}},
}

// extra lines after the first: labs are the most common, then procedures,
// then drugs.
var extraLineKinds = newWeighted(0, 55, 30, 15)

var icd10Codes = []string{
	"E11.9", "I10", "E78.5", "J06.9", "M54.50", "Z00.00", "R05.9", "K21.9", "F41.1", "M17.11",
	"J45.909", "N39.0", "E03.9", "M25.561", "R10.9", "L30.9", "Z23", "G43.909", "H66.90", "E66.9",
}

var modifiers = []string{"25", "59", "RT", "LT", "XU", "GT"}
